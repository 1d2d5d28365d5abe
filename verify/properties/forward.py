"""Forward output and new running statistics against `reference.conv_bn`, train and eval, at
every size tier. Called without autograd; the output with autograd on is checked by `gradients`
and `grad_mode`."""

from __future__ import annotations

from verify.properties.checks import check_against_oracle
from verify.strategies import sizes
from verify.strategies.configs import cases

NAME = "forward"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
# Also at the sizes of real networks: the other properties test what does not depend on size,
# or (running_stats: 2-4 calls an example) cost too much per element there.
SIZE_TIERS = sizes.ALL_TIERS


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier)


def check(variant, case) -> float:
    return check_against_oracle(
        variant, NAME, case, ("out", "running_mean", "running_var"), gradients=False
    )
