"""The building blocks of a property's `check`: fail with a report, compare results against their
bounds, check one call against the oracle, and the case filter the numerical-derivative properties
share. Running a property as a Hypothesis test is `verify.hunt`'s job."""

from __future__ import annotations

import math

import numpy as np

from verify import error_bounds, oracle, runner
from verify.case import Case
from verify.dtypes import largest_finite
from verify.oracle import Results
from verify.oracle_comparison import compare
from verify.report import PropertyFailure


def fail(variant, prop: str, case, details: list[str], ratio: float = math.inf) -> None:
    __tracebackhide__ = True  # the report is the message; these frames are the suite's own
    raise PropertyFailure(variant.name, prop, case, details, ratio)


def assert_close(
    variant,
    prop: str,
    case,
    actual: Results,
    exact: Results,
    bounds: Results,
    names,
    *,
    context: str = "",
) -> float:
    """Every named result of `actual` within `bounds` of `exact`; returns the worst ratio."""
    __tracebackhide__ = True
    largest = largest_finite(case.dtype)
    comparisons = [
        compare(
            name,
            getattr(actual, name),
            getattr(exact, name),
            getattr(bounds, name),
            largest=largest,
        )
        for name in names
    ]
    worst = max((c.ratio for c in comparisons), default=0.0)
    failed = [c for c in comparisons if not c.ok]
    if failed:
        details = ([context] if context else []) + [c.describe() for c in failed]
        details += [
            c.describe() for c in comparisons if c.ok and getattr(exact, c.name) is not None
        ]
        fail(variant, prop, case, details, ratio=worst)
    return worst


def training_step_results(case) -> tuple:
    """What a call with backward must get right: the output, the gradients of the inputs that
    require grad, and the running stats after backward."""
    return (
        ("out",) + tuple("grad_" + n for n in case.requires_grad) + ("running_mean", "running_var")
    )


def check_against_oracle(variant, prop: str, case, names, *, gradients: bool) -> float:
    """One call of the variant (with backward if `gradients`) against the oracle on `names`."""
    __tracebackhide__ = True
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=gradients)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=gradients)
    actual, _ = runner.run(variant, case, arrays, gradients=gradients)
    return assert_close(variant, prop, case, actual, exact, bounds, names)


def check_output(variant, prop: str, case, arrays, out, *, context: str = "") -> float:
    """A forward call's output, already computed on `arrays`, against the oracle's forward."""
    __tracebackhide__ = True
    exact = oracle.expected(case, arrays, gradients=False)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=False)
    actual = Results(out=runner.to_numpy(out))
    return assert_close(variant, prop, case, actual, exact, bounds, ("out",), context=context)


# Smallest per-channel spread of the conv output, relative to its scale, for which finite
# differences of step ~1e-4 stay on one side of the tutorial form's sqrt(var) kink at zero.
MIN_RELATIVE_SPREAD = 1e-2


def has_spread(case: Case) -> bool:
    """True when every channel's conv output varies enough to differentiate numerically (a
    strategy filter of gradcheck and finite_differences: it runs the oracle's conv)."""
    if not case.training:
        return True
    y = oracle.conv_output(case, case.arrays())
    spread = y.std(axis=(0, 2, 3))
    scale = np.abs(y).max(axis=(0, 2, 3)) + 1.0
    return bool(np.all(spread > MIN_RELATIVE_SPREAD * scale))
