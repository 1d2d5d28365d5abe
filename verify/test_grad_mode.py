"""Calls under no_grad and inference_mode give the oracle's output and running stats, with no graph."""
from verify.properties import grad_mode as PROPERTY
from verify.properties._common import hunt


def test_grad_mode(variant, tier):
    hunt(PROPERTY, variant, tier)
