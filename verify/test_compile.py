"""Variants that declare "compile" match the oracle under torch.compile(fullgraph=True)."""

from verify.hunt import hunt
from verify.properties import compile as PROPERTY


def test_compile(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
