"""Custom ops a variant calls pass torch.library.opcheck (skipped for variants without any)."""

from verify.hunt import hunt
from verify.properties import opcheck as PROPERTY


def test_opcheck(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
