"""Value families: the numbers that break Conv2d+BatchNorm kernels.

Values come from NumPy with a seed Hypothesis draws, so large tensors stay cheap to generate while
the configuration (shapes, flags) still shrinks to a minimal case. Every array is rounded to the
case's dtype before anyone sees it: the oracle then computes in float64 on exactly the numbers the
kernel under test receives, and all remaining disagreement is the kernel's own rounding.
"""

from __future__ import annotations

import numpy as np

# Each family stresses a different weakness:
#   normal    ordinary activations and Kaiming-like weights
#   positive  all-positive inputs and weights: conv outputs whose mean dwarfs their spread
#   offset    a large offset with a small spread: catastrophic cancellation in E[y^2]-E[y]^2
#   tiny      magnitudes near the bottom of the dtype's normal range: underflow of squares
#   huge      magnitudes near the top: overflow of squares and sums
#   integers  small integers: exact arithmetic, ties, and frequent constant channels
#   constant  zeroed weight slices and constant input channels: zero-variance channels
VALUE_FAMILIES = ("normal", "positive", "offset", "tiny", "huge", "integers", "constant")

# Scale for "tiny"/"huge" per dtype, chosen so that squares summed over a reduction stay finite and
# normal in a kernel that accumulates in the dtype's own precision (float32 for half types).
_TINY = {"float64": 1e-100, "float32": 1e-15, "bfloat16": 1e-15, "float16": 1e-2}
_HUGE = {"float64": 1e100, "float32": 1e12, "bfloat16": 1e12, "float16": 16.0}
# Offsets of 10 to 10^4, each 10^2 to 10^4.5 times the spread: where a float32 two-pass kernel
# still resolves the centred values (its bound stays below a few percent) while E[y^2] - E[y]^2
# loses the float32 variance by orders of magnitude beyond the bounds. Beyond 10^5 float32 resolves
# nothing and every kernel passes; half types stop at offsets of 10^3 to keep conv sums finite.
_OFFSET_OVER_SPREAD = (2.0, 4.5)
_OFFSET_DECADES = {"float16": 3, "bfloat16": 3}


def round_to_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to `dtype` and return them as float64 again."""
    array = np.asarray(array, dtype=np.float64)
    if dtype == "float64":
        return array
    if dtype == "float32":
        return array.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return array.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        import torch  # NumPy has no bfloat16; torch rounds to nearest even like the kernels do.

        # torch.tensor copies: `array` may be a read-only view (grad_out broadcast over the batch).
        return torch.tensor(array, dtype=torch.float64).to(torch.bfloat16).double().numpy()
    raise ValueError(f"unknown dtype {dtype!r}")


def _input_and_weight(family: str, rng: np.random.Generator, x_shape, w_shape, dtype: str):
    fan_in = int(np.prod(w_shape[1:]))
    normal_w = rng.standard_normal(w_shape) / np.sqrt(fan_in)
    if family == "normal":
        return rng.standard_normal(x_shape), normal_w
    if family == "positive":
        return rng.random(x_shape), rng.random(w_shape) / fan_in
    if family == "offset":
        offset = 10.0 ** rng.uniform(1, _OFFSET_DECADES.get(dtype, 4))
        spread = offset / 10.0 ** rng.uniform(*_OFFSET_OVER_SPREAD)
        return offset + spread * rng.standard_normal(x_shape), normal_w
    if family == "tiny":
        return _TINY[dtype] * rng.standard_normal(x_shape), normal_w
    if family == "huge":
        return _HUGE[dtype] * rng.standard_normal(x_shape), normal_w
    if family == "integers":
        return (
            rng.integers(-3, 4, size=x_shape).astype(np.float64),
            rng.integers(-2, 3, size=w_shape).astype(np.float64),
        )
    if family == "constant":
        x = rng.standard_normal(x_shape)
        # One input channel constant over the whole batch, and about half of the output channels
        # with an all-zero weight slice, whose conv output is then constant (zero variance).
        x[:, rng.integers(x_shape[1])] = rng.standard_normal()
        zeroed = rng.random(w_shape[0]) < 0.5
        zeroed[rng.integers(w_shape[0])] = True
        normal_w[zeroed] = 0.0
        return x, normal_w
    raise ValueError(f"unknown value family {family!r}; known: {VALUE_FAMILIES}")


def _grad_out(case, rng: np.random.Generator) -> np.ndarray:
    """grad_out's values; a stride-0 layout holds one value (or one sample) broadcast."""
    if case.grad_layout == "expanded":
        return np.full(case.out_shape, rng.standard_normal())
    if case.grad_layout == "broadcast":
        return np.broadcast_to(rng.standard_normal((1,) + case.out_shape[1:]), case.out_shape)
    return rng.standard_normal(case.out_shape)


def draw_arrays(case, step: int = 0) -> dict:
    """All float64 arrays for one call of `case` (None where the case has no such input), each
    rounded to the dtype it is passed in."""
    rng = np.random.default_rng([case.seed, step, VALUE_FAMILIES.index(case.values)])
    c_out = case.out_channels
    x, weight = _input_and_weight(case.values, rng, case.x_shape, case.weight_shape, case.dtype)
    if case.values == "integers":
        bias = rng.integers(-3, 4, size=c_out).astype(np.float64)
    else:
        bias = rng.standard_normal(c_out)
    activations = dict(x=x, weight=weight, bias=bias if case.bias else None)
    per_channel = dict(
        bn_weight=rng.normal(1.0, 0.5, size=c_out) if case.affine else None,
        bn_bias=rng.standard_normal(c_out) if case.affine else None,
        running_mean=rng.standard_normal(c_out) if case.running_stats else None,
        running_var=rng.uniform(0.25, 4.0, size=c_out) if case.running_stats else None,
    )
    activations["grad_out"] = _grad_out(case, rng)
    arrays = {
        name: None if a is None else round_to_dtype(a, case.dtype)
        for name, a in activations.items()
    }
    arrays.update(
        {
            name: None if a is None else round_to_dtype(a, case.stats_dtype)
            for name, a in per_channel.items()
        }
    )
    return arrays
