"""`torch.autograd.gradcheck` in float64: the first derivatives of every differentiable input,
against finite differences of the variant's own forward. Small cases only (each example
differentiates numerically; the gradients property covers the size tiers). Second order is its own
property, `second_order`."""

from __future__ import annotations

import torch
from torch.autograd.gradcheck import GradcheckError

from verify import runner
from verify.properties.checks import fail, has_spread
from verify.strategies.configs import cases

NAME = "gradcheck"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
SIZE_TIERS = ("small",)
# Finite differences need smooth, moderately scaled values: no zero-variance channels (the
# tutorial form's sqrt is not differentiable there, and small integers make them likely), no
# extreme magnitudes.
SMOOTH_FAMILIES = ("normal", "positive")


def smooth_cases(variant):
    """Small float64 cases whose channels all vary enough to be differentiated numerically."""
    return cases(
        variant.supports,
        variant.form,
        dtypes=("float64",),
        values=SMOOTH_FAMILIES,
        max_input_elements=256,
    ).filter(has_spread)


def strategy(variant, tier: str = "small"):
    return smooth_cases(variant)


def check(variant, case) -> float:
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    fn, parameters = runner.function_of_parameters(variant, case, tensors)
    try:
        torch.autograd.gradcheck(fn, parameters, fast_mode=True)
    except GradcheckError as error:
        fail(variant, NAME, case, ["gradcheck failed: " + str(error)[:1500]])
    return 0.0
