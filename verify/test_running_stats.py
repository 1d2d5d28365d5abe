"""Consecutive training steps track running stats; eval uses and never changes them."""
from verify.properties import running_stats as PROPERTY
from verify.properties._common import hunt


def test_running_stats(variant, tier):
    hunt(PROPERTY, variant, tier)
