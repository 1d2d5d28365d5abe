"""CUDA against the oracle and against the same variant on CPU. Needs a GPU and a variant that
declares "cuda"; the tests are marked `cuda` and skip cleanly otherwise.

TF32 is switched off while checking: a float32 kernel that computes in TF32 computes in lower
precision than it claims (10 mantissa bits), which is exactly what the bounds are built to catch.

Besides every CPU tier, the `int32` tier: a training forward past 2^31 elements, where int32
indices overflow. No NumPy oracle fits there: values are drawn on the GPU (normal, from the
case's seed), and the output and running statistics are checked against `verify.chunked`'s float64
oracle and bounds, computed on the GPU a few rows at a time. Skipped where the GPU has too little
free memory."""

from __future__ import annotations

import contextlib
import math

import torch

from verify import chunked, error_bounds, oracle, runner
from verify.properties.checks import assert_close, fail
from verify.strategies import sizes
from verify.strategies.configs import cases, dtypes_for

NAME = "cuda"
APPLIES_TO = "variants that declare 'cuda', on a machine with a CUDA device"
EXAMPLE_SHARE = 1.0
SIZE_TIERS = sizes.ALL_TIERS + (sizes.INT32_TIER,)
# Output rows of one sample the chunked oracle holds in float64 at once (32 x 32769 values).
CHUNK_ROWS = 32


def cuda_available() -> bool:
    return torch.cuda.is_available()


def strategy(variant, tier: str = "small"):
    if tier == sizes.INT32_TIER:
        # float64 is left out: its 2^31 values would not fit beside the float64 chunks, and the
        # chunked oracle's own summation order differs from NumPy's by a visible part of its bound.
        return cases(
            variant.supports,
            variant.form,
            tier=tier,
            device="cuda",
            dtypes=[d for d in dtypes_for(variant.supports) if d != "float64"],
            layouts=("contiguous",),
            values=("normal",),
            training=True,
        )
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
    if math.prod(case.out_shape) >= 2**31:
        return _check_past_int32(variant, case)
    arrays = case.arrays()
    exact = oracle.expected(case, arrays)
    bounds = error_bounds.bounds(case, arrays, exact)
    with no_tf32():
        on_cuda, _ = runner.run(variant, case, arrays)
    on_cpu, _ = runner.run(variant, case.replace(device="cpu"), arrays)
    names = oracle.RESULT_NAMES
    worst = assert_close(
        variant, NAME, case, on_cuda, exact, bounds, names, context="CUDA against the oracle"
    )
    # Both devices are within `bounds` of the oracle, so within twice that of each other.
    doubled = oracle.Results(**{n: None if v is None else 2 * v for n, v in bounds.items()})
    return max(
        worst,
        assert_close(
            variant, NAME, case, on_cuda, on_cpu, doubled, names, context="CUDA against CPU"
        ),
    )


def _gpu_inputs(case) -> dict:
    """The call's tensors, drawn on the GPU from the case's seed (normal values, Kaiming-like
    weights, per-channel parameters around 1 and 0)."""
    generator = torch.Generator(device="cuda").manual_seed(case.seed)
    dtype, stats_dtype = getattr(torch, case.dtype), getattr(torch, case.stats_dtype)

    def normal(shape, scale=1.0, shift=0.0, of=dtype):
        drawn = torch.randn(shape, generator=generator, device="cuda", dtype=torch.float32)
        return (drawn * scale + shift).to(of)

    c = case.out_channels
    fan_in = case.in_channels // case.groups * case.kernel[0] * case.kernel[1]
    return dict(
        x=normal(case.x_shape),
        weight=normal(case.weight_shape, 1 / math.sqrt(fan_in)),
        bias=normal((c,)) if case.bias else None,
        bn_weight=normal((c,), 0.2, 1.0, stats_dtype) if case.affine else None,
        bn_bias=normal((c,), 0.2, 0.0, stats_dtype) if case.affine else None,
        running_mean=normal((c,), of=stats_dtype) if case.running_stats else None,
        running_var=(normal((c,), of=stats_dtype).abs() + 0.5) if case.running_stats else None,
    )


def _check_past_int32(variant, case) -> float:
    import pytest

    itemsize = torch.finfo(getattr(torch, case.dtype)).bits // 8
    # x and the output in the case's dtype, the kernel's own temporaries (as many again), and
    # a few float64 chunks.
    needed = 4 * itemsize * math.prod(case.out_shape) + 2**32
    free, _ = torch.cuda.mem_get_info()
    if free < needed:
        pytest.skip(
            f"the int32 tier needs {needed / 2**30:.0f} GiB of free GPU memory, "
            f"{free / 2**30:.0f} GiB free"
        )
    tensors = _gpu_inputs(case)
    before = {
        name: tensors[name].clone()
        for name in ("running_mean", "running_var")
        if case.running_stats
    }
    with no_tf32(), torch.no_grad():
        out = runner.call_variant(variant, case, tensors)
    running = {name: tensors[name] for name in before}
    worst = chunked.compare_training_forward(
        case, dict(tensors, **before), out, running, rows=CHUNK_ROWS
    )
    if worst.ratio > 1:
        fail(
            variant,
            NAME,
            case,
            [
                "past 2^31 elements, values drawn on the GPU from the seed "
                "(verify.properties.cuda._gpu_inputs), against verify.chunked's float64 oracle",
                worst.describe(),
            ],
            ratio=worst.ratio,
        )
    return worst.ratio
