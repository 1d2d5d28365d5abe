"""The dtype facts every kernel in `fused/` shares: which dtypes are half precision, and the dtype
batch-norm statistics are kept in for each (float32 for half inputs, as PyTorch's own batch norm
does, else the input's)."""

from __future__ import annotations

import torch

__all__ = ["HALF_DTYPES", "stat_dtype"]

HALF_DTYPES = (torch.float16, torch.bfloat16)


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed and stored in for an input of `dtype`."""
    return torch.float32 if dtype in HALF_DTYPES else dtype
