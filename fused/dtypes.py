"""The dtype facts every kernel in `fused/` shares: which dtypes are half precision, and the dtype
batch-norm statistics are kept in for each (float32 for half inputs, as PyTorch's own batch norm
does, else the input's)."""

from __future__ import annotations

import torch

__all__ = ["is_half", "stat_dtype"]


def is_half(dtype: torch.dtype) -> bool:
    """float16 or bfloat16 (the suite names them `verify.dtypes.HALF_DTYPES`)."""
    return dtype in (torch.float16, torch.bfloat16)


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed and stored in for an input of `dtype`."""
    return torch.float32 if is_half(dtype) else dtype
