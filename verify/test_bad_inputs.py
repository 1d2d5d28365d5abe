"""Bad input: a clear exception and nothing half-updated."""

from verify.hunt import hunt
from verify.properties import bad_inputs as PROPERTY


def test_bad_inputs(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
