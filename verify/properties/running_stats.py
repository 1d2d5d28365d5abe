"""Several consecutive training steps track the running statistics exactly as the oracle does;
a following eval step uses them, matches the oracle, and leaves them bit-for-bit unchanged."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from verify import error_bounds, oracle, runner
from verify.dtypes import largest_finite
from verify.properties.checks import assert_close, check_output, fail
from verify.strategies import sizes
from verify.strategies.configs import cases, momenta

NAME = "running_stats"
SIZE_TIERS = sizes.SIZE_TIERS
EXAMPLE_SHARE = 1.0
APPLIES_TO = "variants that declare 'running_stats'"
STATS = ("running_mean", "running_var")


@st.composite
def _case_and_steps(draw, variant, tier):
    case = draw(cases(variant.supports, variant.form, tier=tier, training=True))
    return case.replace(running_stats=True, momentum=draw(momenta()), steps=draw(st.integers(2, 4)))


def strategy(variant, tier: str = "small"):
    if "running_stats" not in variant.supports:
        return None
    return _case_and_steps(variant, tier)


def check(variant, case) -> float:
    steps = case.steps
    first = case.arrays(0)
    stats = {
        name: runner.to_torch(first[name], case, layout="contiguous", dtype=case.stats_dtype)
        for name in STATS
    }
    expected_stats = {name: first[name] for name in STATS}
    stats_bounds = {name: np.zeros_like(first[name]) for name in STATS}
    worst = 0.0
    for step in range(steps):
        arrays = dict(case.arrays(step), **expected_stats)
        tensors = runner.make_inputs(case, arrays, requires_grad=False)
        tensors.update(stats)
        with torch.no_grad():
            runner.call_variant(variant, case, tensors)
        exact = oracle.expected(case, arrays, gradients=False)
        bound = error_bounds.bounds(case, arrays, exact, gradients=False)
        # Errors of earlier steps decay by (1 - momentum) per step and add to this step's own.
        for name in STATS:
            stats_bounds[name] = (1 - case.momentum) * stats_bounds[name] + getattr(bound, name)
        actual = oracle.Results(**{name: runner.to_numpy(stats[name]) for name in STATS})
        worst = max(
            worst,
            assert_close(
                variant,
                NAME,
                case,
                actual,
                exact,
                oracle.Results(**stats_bounds),
                STATS,
                context=f"after training step {step + 1} of {steps}",
            ),
        )
        expected_stats = {name: getattr(exact, name) for name in STATS}
        if any(np.any(np.abs(v) > largest_finite(case.dtype)) for v in expected_stats.values()):
            # The exact running stats overflow the dtype: the kernel holds inf, legitimately, and
            # further blending (0 * inf with momentum 1) is outside what any kernel can match.
            break
    return max(worst, _eval_step(variant, case, steps, stats))


def _eval_step(variant, case, steps, stats) -> float:
    eval_case = case.replace(training=False, steps=1)
    # The oracle's eval output is computed from the kernel's own running stats, so this step
    # tests the eval branch alone, not the drift accumulated above.
    own = {name: runner.to_numpy(stats[name]) for name in STATS}
    arrays = dict(eval_case.arrays(steps), **own)
    tensors = runner.make_inputs(eval_case, arrays, requires_grad=False)
    tensors.update(stats)
    before = {name: stats[name].clone() for name in STATS}
    with torch.no_grad():
        out = runner.call_variant(variant, eval_case, tensors)
    changed = [name for name in STATS if not torch.equal(before[name], stats[name])]
    if changed:
        fail(variant, NAME, eval_case, [f"eval mode changed {changed} (it must only read them)"])
    return check_output(
        variant, NAME, eval_case, arrays, out, context=f"eval step after {steps} training steps"
    )
