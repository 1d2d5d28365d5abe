"""Forward output and new running statistics against `reference.conv_bn`, train and eval."""
from __future__ import annotations

from verify.properties._common import check_against_oracle
from verify.strategies.configs import cases

NAME = "forward"


def strategy(variant):
    return cases(variant.supports, variant.form)


def check(variant, case) -> float:
    return check_against_oracle(variant, NAME, case, ("out", "running_mean", "running_var"),
                                gradients=False)
