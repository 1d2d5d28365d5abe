"""Per-channel shifts of the conv output: cancelled in training, visible in running mean and eval."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import invariants as PROPERTY


@given(data=st.data())
def test_shift_invariance(variant, data):
    run_example(PROPERTY, variant, data)
