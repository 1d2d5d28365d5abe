"""Bad input: a clear exception and nothing half-updated."""
from verify.properties import bad_inputs as PROPERTY
from verify.properties._common import hunt


def test_bad_inputs(variant, tier):
    hunt(PROPERTY, variant, tier)
