"""Per-channel shifts of the conv output: cancelled in training, visible in running mean and eval."""
from verify.properties import invariants as PROPERTY
from verify.properties._common import hunt


def test_shift_invariance(variant, tier):
    hunt(PROPERTY, variant, tier)
