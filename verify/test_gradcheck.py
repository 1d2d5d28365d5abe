"""torch.autograd.gradcheck in float64: first derivatives."""
from verify.properties import gradcheck as PROPERTY
from verify.hunt import hunt


def test_gradcheck(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
