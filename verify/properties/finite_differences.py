"""The variant's backward against central finite differences of its own forward.

Independent of the oracle: along a random direction v in (x, weight, bias, bn_weight, bn_bias),
the loss L(t) = sum(grad_out * f(params + t v)) must have derivative <grads, v>. Central differences
at steps h and h/2 give both the derivative (Richardson-extrapolated) and an estimate of its
truncation error; the bound adds the rounding error of L amplified by 1/h."""

from __future__ import annotations

import numpy as np
import torch

from verify import runner
from verify.dtypes import unit_roundoff
from verify.properties.checks import fail, has_spread
from verify.properties.gradcheck import SMOOTH_FAMILIES
from verify.strategies.configs import cases

NAME = "finite_differences"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
# Each example evaluates the forward four times more in float64; the maths it checks does not
# depend on size, so it keeps to small cases (the gradients property covers the size tiers).
SIZE_TIERS = ("small",)
STEP = 1e-4
# Rounding of L: each of its terms carries a few ulps amplified by at most the conditioning of
# batch norm on these well-spread cases; 1e3 ulps of sum|grad_out * out| is a generous ceiling.
ROUNDING_ULPS = 1e3
SAFETY = 4.0


def strategy(variant, tier: str = "small"):
    return cases(
        variant.supports, variant.form, dtypes=("float64",), values=SMOOTH_FAMILIES
    ).filter(has_spread)


def check(variant, case) -> float:
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    fn, parameters = runner.function_of_parameters(variant, case, tensors)
    grad_out = tensors["grad_out"]
    rng = np.random.default_rng([case.seed, 0xFD])
    directions = []
    for p in parameters:
        scale = max(float(p.detach().pow(2).mean().sqrt()), 1e-3)
        directions.append(torch.from_numpy(scale * rng.standard_normal(tuple(p.shape))).to(p))

    out = fn(*parameters)
    grads = torch.autograd.grad(out, parameters, grad_out, allow_unused=True)
    analytic = float(
        sum((g * d).sum() for g, d in zip(grads, directions, strict=True) if g is not None)
    )

    def loss(t: float) -> float:
        with torch.no_grad():
            moved = [p.detach() + t * d for p, d in zip(parameters, directions, strict=True)]
            return float((fn(*moved) * grad_out).sum())

    def central(h: float) -> float:
        return (loss(h) - loss(-h)) / (2 * h)

    coarse, fine = central(STEP), central(STEP / 2)
    numeric = (4 * fine - coarse) / 3
    magnitude = float((grad_out * out.detach()).abs().sum())
    bound = SAFETY * (
        abs(fine - coarse) + ROUNDING_ULPS * unit_roundoff(case.dtype) * magnitude / STEP
    )
    if bound > 0:
        ratio = abs(analytic - numeric) / bound
    else:
        ratio = 0.0 if analytic == numeric else np.inf
    if not np.isfinite(analytic) or not ratio <= 1.0:
        fail(
            variant,
            NAME,
            case,
            [
                f"directional derivative: backward gives {analytic!r}, finite differences give "
                f"{numeric!r} (steps {STEP:g} -> {coarse!r}, {STEP / 2:g} -> {fine!r}); "
                f"|diff| {abs(analytic - numeric):.3e} > bound {bound:.3e}"
            ],
        )
    return ratio
