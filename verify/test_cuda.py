"""CUDA against the oracle and against CPU (skipped without a GPU)."""
import pytest

from verify.properties import devices as PROPERTY
from verify.properties._common import hunt


@pytest.mark.cuda
def test_cuda(variant, tier):
    hunt(PROPERTY, variant, tier)
