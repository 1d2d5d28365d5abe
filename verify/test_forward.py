"""Forward output and new running stats against the oracle."""

from verify.hunt import hunt
from verify.properties import forward as PROPERTY


def test_forward(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
