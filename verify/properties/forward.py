"""Forward output and new running statistics against `reference.conv_bn`, train and eval."""
from __future__ import annotations

from verify import oracle, runner, tolerance
from verify.properties._common import assert_close
from verify.strategies.configs import cases

NAME = "forward"


def strategy(variant):
    return cases(variant.supports, variant.form)


def check(variant, case) -> float:
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=False)
    allowed = tolerance.bounds(case, arrays, exact, gradients=False)
    actual, _ = runner.run(variant, case, arrays, gradients=False)
    return assert_close(variant, NAME, case, actual, exact, allowed,
                        ("out", "running_mean", "running_var"))
