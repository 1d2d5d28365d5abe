"""Two identical calls (forward and backward, same inputs, same running stats) give bit-for-bit
identical results, unless the variant declares `nondeterministic` (atomics, split reductions
merged in arrival order); then each must still be within the bounds of the oracle.

Every call the suite makes fills uninitialised memory with NaN (`verify.runner`), so a kernel
that reads memory it never wrote fails here and in the oracle comparisons, instead of depending on
what the allocator happened to hold."""

from __future__ import annotations

import numpy as np

from verify import error_bounds, oracle, runner
from verify.properties.checks import assert_close, fail, training_step_results
from verify.strategies import sizes
from verify.strategies.configs import calling_contexts, cases

NAME = "determinism"
APPLIES_TO = "every variant"
SIZE_TIERS = sizes.SIZE_TIERS
EXAMPLE_SHARE = 1.0


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier).flatmap(calling_contexts)


def check(variant, case) -> float:
    arrays = case.arrays()
    first, _ = runner.run(variant, case, arrays)
    second, _ = runner.run(variant, case, arrays)
    names = training_step_results(case)
    if "nondeterministic" not in variant.supports:
        for name in names:
            a, b = getattr(first, name), getattr(second, name)
            if a is None or b is None:
                continue
            differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
            if differs.any():
                index = tuple(int(i) for i in np.argwhere(differs)[0])
                fail(
                    variant,
                    NAME,
                    case,
                    [
                        f"{name}: two identical calls differ at {index}: {a[index]!r} then "
                        f"{b[index]!r} ({int(differs.sum())} of {a.size} elements differ); declare "
                        "'nondeterministic' in supports if the kernel is meant to be"
                    ],
                )
    exact = oracle.expected(case, arrays)
    bounds = error_bounds.bounds(case, arrays, exact)
    return max(
        assert_close(variant, NAME, case, result, exact, bounds, names, context=f"call {i} of 2")
        for i, result in ((1, first), (2, second))
    )
