"""Two identical calls give identical results (unless declared nondeterministic); uninitialised
memory is NaN."""

from verify.hunt import hunt
from verify.properties import determinism as PROPERTY


def test_determinism(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
