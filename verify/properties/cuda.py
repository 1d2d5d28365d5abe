"""CUDA against the oracle and against the same variant on CPU. Needs a GPU and a variant that
declares "cuda"; the tests are marked `cuda` and skip cleanly otherwise.

TF32 is switched off while checking: a float32 kernel that computes in TF32 computes in lower
precision than it claims (10 mantissa bits), which is exactly what the bounds are built to catch."""

from __future__ import annotations

import contextlib

import torch

from verify import oracle, runner, tolerance
from verify.properties.checks import assert_close
from verify.strategies.configs import cases

NAME = "cuda"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier, device="cuda")


@contextlib.contextmanager
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check(variant, case) -> float:
    arrays = case.arrays()
    exact = oracle.expected(case, arrays)
    allowed = tolerance.bounds(case, arrays, exact)
    with no_tf32():
        on_cuda, _ = runner.run(variant, case, arrays)
    on_cpu, _ = runner.run(variant, case.replace(device="cpu"), arrays)
    names = oracle.RESULT_NAMES
    worst = assert_close(
        variant, NAME, case, on_cuda, exact, allowed, names, context="CUDA against the oracle"
    )
    # Both devices are within `allowed` of the oracle, so within twice that of each other.
    doubled = oracle.Results(**{n: None if v is None else 2 * v for n, v in allowed.items()})
    return max(
        worst,
        assert_close(
            variant, NAME, case, on_cuda, on_cpu, doubled, names, context="CUDA against CPU"
        ),
    )
