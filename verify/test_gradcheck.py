"""torch.autograd.gradcheck in float64; gradgradcheck where double backward is declared."""
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import gradcheck as PROPERTY


@given(data=st.data())
def test_gradcheck(variant, data):
    run_example(PROPERTY, variant, data)
