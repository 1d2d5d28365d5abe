"""Every gradient against the oracle, train and eval."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import gradients as PROPERTY


@given(data=st.data())
def test_gradients(variant, data):
    run_example(PROPERTY, variant, data)
