"""Forward output and new running statistics against `reference.conv_bn`, train and eval, at
every size tier. Called without autograd; the output with autograd on is checked by `gradients`
and `grad_mode`."""

from __future__ import annotations

from verify.properties.checks import check_against_oracle
from verify.strategies.configs import cases

NAME = "forward"


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier)


def check(variant, case) -> float:
    return check_against_oracle(
        variant, NAME, case, ("out", "running_mean", "running_var"), gradients=False
    )
