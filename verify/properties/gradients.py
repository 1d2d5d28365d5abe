"""Every gradient (input, weight, conv bias, bn weight, bn bias) against
`reference.conv_bn_backward`, in training and in eval mode."""
from __future__ import annotations

from verify import oracle, runner, tolerance
from verify.properties._common import assert_close
from verify.strategies.configs import cases

NAME = "gradients"


def strategy(variant):
    return cases(variant.supports, variant.form)


def check(variant, case) -> float:
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=True)
    allowed = tolerance.bounds(case, arrays, exact, gradients=True)
    actual, _ = runner.run(variant, case, arrays, gradients=True)
    return assert_close(variant, NAME, case, actual, exact, allowed, oracle.GRADIENT_NAMES)
