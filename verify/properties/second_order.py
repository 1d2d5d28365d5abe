"""Second derivatives (double backward) in float64. Where the variant declares
`double_backward`, `torch.autograd.gradgradcheck` must pass. Where it does not, double backward
must either raise a clear error or be right: a first-derivative-correct kernel whose second
derivative is silently wrong (a backward written with non-differentiable shortcuts, yet not marked
once_differentiable) fails here, apart from the first-order properties. Small cases only."""

from __future__ import annotations

import torch
from torch.autograd.gradcheck import GradcheckError

from verify import runner
from verify.properties.checks import fail
from verify.properties.gradcheck import smooth_cases

NAME = "second_order"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
SIZE_TIERS = ("small",)


def strategy(variant, tier: str = "small"):
    return smooth_cases(variant)


def check(variant, case) -> float:
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    fn, parameters = runner.function_of_parameters(variant, case, tensors)
    grad_out = tensors["grad_out"]
    if "double_backward" not in variant.supports and not _double_backward_runs(
        fn, parameters, grad_out
    ):
        return 0.0  # a clear error is the honest answer for an undeclared feature
    try:
        torch.autograd.gradgradcheck(fn, parameters, (grad_out,), fast_mode=True)
    except GradcheckError as error:
        declared = (
            "declared double_backward"
            if "double_backward" in variant.supports
            else "double backward does not raise, so it must be right"
        )
        fail(variant, NAME, case, [f"gradgradcheck failed ({declared}): " + str(error)[:1500]])
    return 0.0


def _double_backward_runs(fn, parameters, grad_out) -> bool:
    """Does differentiating the first derivatives go through without an error?"""
    try:
        out = fn(*parameters)
        grads = torch.autograd.grad(out, parameters, grad_out, create_graph=True)
        second = sum((g * torch.randn_like(g)).sum() for g in grads if g.requires_grad)
        if not isinstance(second, torch.Tensor):
            return False  # no gradient carries a graph: double backward is cleanly unavailable
        torch.autograd.grad(second, parameters, allow_unused=True)
    except (RuntimeError, runner.KernelRaised):
        return False
    return True
