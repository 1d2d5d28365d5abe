"""Every gradient (input, weight, conv bias, bn weight, bn bias) against
`reference.conv_bn_backward`, in training and in eval mode; the running stats after backward
against `reference.conv_bn` (backward must not update them again)."""
from __future__ import annotations

from verify.oracle import GRADIENT_NAMES
from verify.properties._common import check_against_oracle
from verify.strategies.configs import cases

NAME = "gradients"


def strategy(variant):
    return cases(variant.supports, variant.form)


def check(variant, case) -> float:
    return check_against_oracle(variant, NAME, case,
                                GRADIENT_NAMES + ("running_mean", "running_var"), gradients=True)
