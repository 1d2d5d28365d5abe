"""The variant's backward against finite differences of its own forward."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import finite_differences as PROPERTY


@given(data=st.data())
def test_finite_differences(variant, data):
    run_example(PROPERTY, variant, data)
