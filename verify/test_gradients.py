"""Every gradient against the oracle, train and eval."""

from verify.hunt import hunt
from verify.properties import gradients as PROPERTY


def test_gradients(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
