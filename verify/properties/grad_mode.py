"""Calls under `torch.no_grad()` and `torch.inference_mode()` (calibration and evaluation passes),
in training and eval mode, give the oracle's output and running statistics, as the same call with
autograd on does; and they keep no autograd graph (a kernel that re-enables grad inside keeps its
saved tensors alive through every calibration pass)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from verify import error_bounds, oracle, runner
from verify.properties.checks import assert_close, fail
from verify.strategies import sizes
from verify.strategies.configs import cases

NAME = "grad_mode"
APPLIES_TO = "every variant"
SIZE_TIERS = sizes.SIZE_TIERS
EXAMPLE_SHARE = 1.0
MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
RESULTS = ("out", "running_mean", "running_var")


@st.composite
def _case_in_mode(draw, variant, tier):
    case = draw(cases(variant.supports, variant.form, tier=tier))
    return case.replace(grad_mode=draw(st.sampled_from(tuple(MODES))))


def strategy(variant, tier: str = "small"):
    return _case_in_mode(variant, tier)


def _call(variant, case, arrays, mode):
    """Output and running stats of one forward; inputs require grad as in training."""
    tensors = runner.make_inputs(case, arrays, requires_grad=True)
    with mode():
        out = runner.call_variant(variant, case, tensors)
    return out, oracle.Results(
        out=runner.to_numpy(out),
        running_mean=runner.to_numpy(tensors["running_mean"]),
        running_var=runner.to_numpy(tensors["running_var"]),
    )


def check(variant, case) -> float:
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=False)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=False)
    _, enabled = _call(variant, case, arrays, torch.enable_grad)
    worst = assert_close(
        variant,
        NAME,
        case,
        enabled,
        exact,
        bounds,
        RESULTS,
        context="with autograd on (the reference call)",
    )
    out, in_mode = _call(variant, case, arrays, MODES[case.grad_mode])
    if out.requires_grad or out.grad_fn is not None:
        fail(
            variant,
            NAME,
            case,
            [
                f"under torch.{case.grad_mode}() the output requires grad "
                "(an autograd graph was built and its saved tensors are kept)"
            ],
        )
    return max(
        worst,
        assert_close(
            variant,
            NAME,
            case,
            in_mode,
            exact,
            bounds,
            RESULTS,
            context=f"under torch.{case.grad_mode}()",
        ),
    )
