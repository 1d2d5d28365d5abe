"""Forward output and new running stats against the oracle."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import forward as PROPERTY


@given(data=st.data())
def test_forward(variant, data):
    run_example(PROPERTY, variant, data)
