"""CUDA against the oracle and against CPU (skipped without a GPU)."""

import pytest

from verify.hunt import hunt
from verify.properties import cuda as PROPERTY


@pytest.mark.cuda
def test_cuda(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
