"""Two identical calls give identical results (unless declared nondeterministic); uninitialised memory is NaN."""
from verify.properties import determinism as PROPERTY
from verify.properties._common import hunt


def test_determinism(variant, tier):
    hunt(PROPERTY, variant, tier)
