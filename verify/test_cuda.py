"""CUDA against the oracle and against CPU (skipped without a GPU)."""
import pytest
from hypothesis import given, strategies as st

from verify.properties._common import run_example
from verify.properties import devices as PROPERTY


@pytest.mark.cuda
@given(data=st.data())
def test_cuda(variant, data):
    run_example(PROPERTY, variant, data)
