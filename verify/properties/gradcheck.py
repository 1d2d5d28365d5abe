"""`torch.autograd.gradcheck` in float64; `gradgradcheck` where the variant declares double
backward. An undeclared double backward must either raise or be right: a silently wrong second
derivative is a failure, a clear error is not."""
from __future__ import annotations

import torch
from torch.autograd.gradcheck import GradcheckError

from verify import runner
from verify.properties._common import fail
from verify.strategies.configs import cases, has_spread

NAME = "gradcheck"
# Finite differences need smooth, moderately scaled values: no zero-variance channels (the
# tutorial form's sqrt is not differentiable there, and small integers make them likely), no
# extreme magnitudes.
SMOOTH_FAMILIES = ("normal", "positive")


def strategy(variant):
    return cases(variant.supports, variant.form, dtypes=("float64",), values=SMOOTH_FAMILIES,
                 max_input_elements=256).filter(has_spread)


def check(variant, case) -> float:
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    fn, parameters = runner.function_of_parameters(variant, case, tensors)
    try:
        torch.autograd.gradcheck(fn, parameters, fast_mode=True)
    except GradcheckError as error:
        fail(variant, NAME, case, ["gradcheck failed: " + str(error)[:1500]])
    grad_out = tensors["grad_out"]
    if "double_backward" in variant.supports:
        _gradgradcheck(variant, case, fn, parameters, grad_out)
    else:
        _undeclared_double_backward(variant, case, fn, parameters, grad_out)
    return 0.0


def _gradgradcheck(variant, case, fn, parameters, grad_out):
    try:
        torch.autograd.gradgradcheck(fn, parameters, (grad_out,), fast_mode=True)
    except GradcheckError as error:
        fail(variant, NAME, case, ["gradgradcheck failed: " + str(error)[:1500]])


def _undeclared_double_backward(variant, case, fn, parameters, grad_out):
    try:
        out = fn(*parameters)
        grads = torch.autograd.grad(out, parameters, grad_out, create_graph=True)
        second = sum((g * torch.randn_like(g)).sum() for g in grads if g.requires_grad)
        if not isinstance(second, torch.Tensor):
            return  # no gradient carries a graph: double backward is cleanly unavailable
        torch.autograd.grad(second, parameters, allow_unused=True)
    except RuntimeError:
        return  # a clear error is the honest answer for an undeclared feature
    _gradgradcheck(variant, case, fn, parameters, grad_out)
