"""Invariants that catch bugs the output hides.

Training-mode batch norm cancels any per-channel shift of the conv output, so a kernel can drop or
mangle the conv bias and still produce the right training output. Shifting the conv output by
delta per channel (through the conv bias, or through a constant added to the input where the
variant has no bias and no padding) must leave the training output unchanged, move the new running
mean by exactly momentum * delta, and in eval mode move the output by delta times the channel's
scale. Each is checked on the variant's own two answers: the difference of the two calls must
match the oracle's difference within the sum of both bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from verify import error_bounds, oracle, runner
from verify.properties.checks import assert_close
from verify.strategies import sizes
from verify.strategies.configs import cases
from verify.values import round_to_dtype

NAME = "shift_invariance"
APPLIES_TO = "every variant"
SIZE_TIERS = sizes.SIZE_TIERS
EXAMPLE_SHARE = 1.0


@st.composite
def _shiftable_case(draw, variant, tier):
    if "bias" in variant.supports:
        return draw(cases(variant.supports, variant.form, tier=tier)).replace(bias=True)
    # Without a conv bias, a constant added to every input value shifts each conv output channel by
    # that constant times the sum of its weights, exactly, as long as no padding breaks uniformity:
    # draw the geometry without padding (forcing it to 0 afterwards would make illegal cases).
    return draw(cases(variant.supports - {"padding"}, variant.form, tier=tier))


def strategy(variant, tier: str = "small"):
    return _shiftable_case(variant, tier)


def _shifted(case, arrays):
    rng = np.random.default_rng([case.seed, 0x5F])
    shifted = dict(arrays)
    if case.bias:
        shifted["bias"] = round_to_dtype(
            arrays["bias"] + rng.standard_normal(case.out_channels), case.dtype
        )
    else:
        # Rounding makes the shift inexact; both oracle answers see the same rounded inputs.
        shifted["x"] = round_to_dtype(arrays["x"] + 2.0 ** int(rng.integers(-2, 3)), case.dtype)
    return shifted


def check(variant, case) -> float:
    arrays = case.arrays()
    shifted = _shifted(case, arrays)
    names = ("out", "running_mean", "running_var")
    actual = [runner.run(variant, case, a, gradients=False)[0] for a in (arrays, shifted)]
    exact = [oracle.expected(case, a, gradients=False) for a in (arrays, shifted)]
    bounds = [
        error_bounds.bounds(case, a, e, gradients=False)
        for a, e in zip((arrays, shifted), exact, strict=True)
    ]

    def difference(pair):
        return oracle.Results(
            **{
                n: None
                if getattr(pair[0], n) is None
                else getattr(pair[1], n) - getattr(pair[0], n)
                for n in names
            }
        )

    total = oracle.Results(
        **{
            n: None
            if getattr(bounds[0], n) is None
            else getattr(bounds[0], n) + getattr(bounds[1], n)
            for n in names
        }
    )
    how = "conv bias" if case.bias else "input (a constant added to x)"
    return assert_close(
        variant,
        NAME,
        case,
        difference(actual),
        difference(exact),
        total,
        names,
        context=f"change between two calls that shift the conv output through the {how}",
    )
