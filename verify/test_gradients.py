"""Every gradient against the oracle, train and eval."""
from verify.properties import gradients as PROPERTY
from verify.properties._common import hunt


def test_gradients(variant, tier):
    hunt(PROPERTY, variant, tier)
