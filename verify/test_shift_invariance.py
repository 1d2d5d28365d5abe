"""Per-channel shifts of the conv output: cancelled in training, visible in running mean and
eval."""

from verify.hunt import hunt
from verify.properties import shift_invariance as PROPERTY


def test_shift_invariance(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
