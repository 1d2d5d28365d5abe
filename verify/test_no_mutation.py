"""No input modified except running stats; new values give new results."""

from verify.hunt import hunt
from verify.properties import no_mutation as PROPERTY


def test_no_mutation(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
