"""Custom ops a variant calls pass torch.library.opcheck (skipped for variants without any)."""
from verify.properties import custom_ops as PROPERTY
from verify.properties._common import hunt


def test_opcheck(variant, tier):
    hunt(PROPERTY, variant, tier)
