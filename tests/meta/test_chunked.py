"""verify.chunked (the int32 tier's oracle and bounds, a batch chunk at a time on the GPU) is the
same model as `oracle.expected` and `error_bounds.bounds`: checked on CPU at small sizes, where both
run, by handing it outputs placed at known fractions of the NumPy bound. (The int32 tier draws
float32 and half types: in float64 the two oracles' own summation orders differ by a visible
fraction of float64's bound.)"""

from __future__ import annotations

import pytest
import torch

from verify import chunked, error_bounds, oracle, runner
from verify.case import Case

CASES = [
    Case(
        batch=5,
        in_channels=2,
        out_channels=3,
        height=5,
        width=3,
        kernel=(k, k),
        form=form,
        dtype=dtype,
        values=values,
        affine=affine,
        bias=affine,
        running_stats=True,
        seed=seed,
    )
    for seed, (form, dtype, values, affine) in enumerate(
        [
            ("standard", "float32", "normal", True),
            ("tutorial", "float32", "offset", False),
            ("standard", "float16", "positive", True),
            ("tutorial", "float32", "constant", True),
            ("standard", "float32", "integers", False),
        ]
    )
    for k in (1, 2)  # pointwise: two rows at a time; otherwise whole samples
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c.form}-{c.dtype}-{c.values}-k{c.kernel[0]}"
)
@pytest.mark.parametrize("fraction", [0.5, 3.0])
def test_chunked_oracle_and_bounds_match_the_numpy_ones(case, fraction):
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=False)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=False)
    tensors = runner.make_inputs(case, arrays, requires_grad=False)
    # Outputs exactly `fraction` of the NumPy bound away from the NumPy oracle (in float64, so
    # no rounding of the kernel's dtype moves them).
    out = torch.from_numpy(exact.out + fraction * bounds.out)
    running = {
        name: torch.from_numpy(getattr(exact, name) - fraction * getattr(bounds, name))
        for name in ("running_mean", "running_var")
    }
    worst = chunked.compare_training_forward(case, tensors, out, running, rows=2)
    assert worst.ratio == pytest.approx(fraction, rel=1e-6)


def test_a_nan_the_oracle_does_not_have_is_the_worst_error():
    case = CASES[0]
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=False)
    out = torch.from_numpy(exact.out).clone()
    out[4, 1, 0, 0] = float("nan")
    worst = chunked.compare_training_forward(
        case, runner.make_inputs(case, arrays, requires_grad=False), out, {}, rows=2
    )
    assert worst.ratio == float("inf") and worst.index == (4, 1, 0, 0)
    assert "out: worst element (4, 1, 0, 0)" in worst.describe()
