"""Memory-saving variants save fewer bytes for backward than eager Conv2d+BatchNorm2d."""
from hypothesis import given, strategies as st

from verify.properties import saved_memory as PROPERTY
from verify.properties._common import run_example


@given(data=st.data())
def test_saved_memory(variant, data):
    run_example(PROPERTY, variant, data)
