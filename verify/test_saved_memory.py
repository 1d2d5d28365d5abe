"""Memory-saving variants save fewer bytes for backward than eager Conv2d+BatchNorm2d."""

from verify.hunt import hunt
from verify.properties import saved_memory as PROPERTY


def test_saved_memory(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
