"""The variant's backward against finite differences of its own forward."""
from verify.properties import finite_differences as PROPERTY
from verify.properties._common import hunt


def test_finite_differences(variant, tier):
    hunt(PROPERTY, variant, tier)
