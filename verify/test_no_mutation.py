"""No input modified except running stats; new values give new results."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import mutation as PROPERTY


@given(data=st.data())
def test_no_mutation(variant, data):
    run_example(PROPERTY, variant, data)
