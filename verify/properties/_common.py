"""What every property shares: compare results, record the tally, steer Hypothesis, report."""
from __future__ import annotations

import math

from hypothesis import target
from hypothesis.control import currently_in_test_context

from verify import isolation, oracle, report, runner, tolerance
from verify.case import largest_finite
from verify.comparison import compare
from verify.oracle import Results


def run_example(prop_module, variant, data) -> float:
    """Draw one case for `variant`, check the property on it, and ask Hypothesis to search
    toward the largest error relative to its bound."""
    case = data.draw(prop_module.strategy(variant), label="case")
    isolation.note_case(variant.name, prop_module.NAME, case)
    try:
        ratio = prop_module.check(variant, case)
    except report.PropertyFailure:
        report.record(variant.name, prop_module.NAME, math.inf, case, failed=True)
        raise
    except Exception as error:  # noqa: BLE001 - a crash on a legal case is a finding too
        report.record(variant.name, prop_module.NAME, math.inf, case, failed=True)
        message = report.failure_message(variant.name, prop_module.NAME, case, [
            f"raised {type(error).__name__} on a legal case: {error}"])
        raise report.PropertyFailure(message) from error
    report.record(variant.name, prop_module.NAME, ratio, case)
    if currently_in_test_context():
        target(min(ratio, 1e12) if math.isfinite(ratio) else 1e12, label=prop_module.NAME)
    return ratio


def fail(variant, prop: str, case, details: list[str]) -> None:
    __tracebackhide__ = True  # the report is the message; these frames are the suite's own
    raise report.PropertyFailure(report.failure_message(variant.name, prop, case, details))


def assert_close(variant, prop: str, case, actual: Results, exact: Results, allowed: Results,
                 names, *, context: str = "") -> float:
    """Every named result of `actual` within `allowed` of `exact`; returns the worst ratio."""
    __tracebackhide__ = True
    largest = largest_finite(case.dtype)
    comparisons = [compare(name, getattr(actual, name), getattr(exact, name),
                           getattr(allowed, name), largest=largest) for name in names]
    worst = max((c.ratio for c in comparisons), default=0.0)
    failed = [c for c in comparisons if not c.ok]
    if failed:
        details = ([context] if context else []) + [c.describe() for c in failed]
        details += [c.describe() for c in comparisons if c.ok and getattr(exact, c.name) is not None]
        fail(variant, prop, case, details)
    return worst




def check_against_oracle(variant, prop: str, case, names, *, gradients: bool) -> float:
    """One call of the variant (with backward if `gradients`) against the oracle on `names`."""
    __tracebackhide__ = True
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=gradients)
    allowed = tolerance.bounds(case, arrays, exact, gradients=gradients)
    actual, _ = runner.run(variant, case, arrays, gradients=gradients)
    return assert_close(variant, prop, case, actual, exact, allowed, names)
