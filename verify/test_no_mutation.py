"""No input modified except running stats; new values give new results."""
from verify.properties import mutation as PROPERTY
from verify.properties._common import hunt


def test_no_mutation(variant, tier):
    hunt(PROPERTY, variant, tier)
