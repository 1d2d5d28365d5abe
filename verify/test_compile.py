"""Variants that declare "compile" match the oracle under torch.compile(fullgraph=True)."""
from verify.properties import compile as PROPERTY
from verify.properties._common import hunt


def test_compile(variant, tier):
    hunt(PROPERTY, variant, tier)
