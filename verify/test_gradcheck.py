"""torch.autograd.gradcheck in float64: first derivatives."""

from verify.hunt import hunt
from verify.properties import gradcheck as PROPERTY


def test_gradcheck(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
