"""Bad input: a clear exception and nothing half-updated."""
from verify.properties import bad_inputs as PROPERTY
from verify.hunt import hunt


def test_bad_inputs(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
