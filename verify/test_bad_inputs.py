"""Bad input: a clear exception and nothing half-updated."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import bad_inputs as PROPERTY


@given(data=st.data())
def test_bad_inputs(variant, data):
    run_example(PROPERTY, variant, data)
