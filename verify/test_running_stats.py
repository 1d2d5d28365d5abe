"""Consecutive training steps track running stats; eval uses and never changes them."""

from verify.hunt import hunt
from verify.properties import running_stats as PROPERTY


def test_running_stats(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
