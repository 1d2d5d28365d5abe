"""Calls under no_grad and inference_mode give the oracle's output and running stats, with no
graph."""

from verify.hunt import hunt
from verify.properties import grad_mode as PROPERTY


def test_grad_mode(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
