"""torch.autograd.gradcheck in float64: first derivatives."""
from verify.properties import gradcheck as PROPERTY
from verify.properties._common import hunt


def test_gradcheck(variant, tier):
    hunt(PROPERTY, variant, tier)
