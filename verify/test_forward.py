"""Forward output and new running stats against the oracle."""
from verify.properties import forward as PROPERTY
from verify.properties._common import hunt


def test_forward(variant, tier):
    hunt(PROPERTY, variant, tier)
