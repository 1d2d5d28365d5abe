"""The kernel inside real programs: in-place ops on its output, several backward passes,
accumulated gradients, a layer called again and again."""

from verify.hunt import hunt
from verify.properties import programs as PROPERTY


def test_programs(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
