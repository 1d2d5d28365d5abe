"""The variant's backward against finite differences of its own forward."""

from verify.hunt import hunt
from verify.properties import finite_differences as PROPERTY


def test_finite_differences(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
