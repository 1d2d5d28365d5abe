"""Custom ops a variant calls pass torch.library.opcheck (skipped for variants without any)."""
from hypothesis import given, settings, strategies as st

from verify.properties import custom_ops as PROPERTY
from verify.properties._common import run_example


# opcheck compiles (AOT dispatch) on every call: a tenth of the profile's examples is plenty.
@settings(max_examples=max(3, settings.default.max_examples // 10))
@given(data=st.data())
def test_opcheck(variant, data):
    run_example(PROPERTY, variant, data)
