"""Consecutive training steps track running stats; eval uses and never changes them."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import running_stats as PROPERTY


@given(data=st.data())
def test_running_stats(variant, data):
    run_example(PROPERTY, variant, data)
