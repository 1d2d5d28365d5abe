"""Every requested gradient (input, weight, conv bias, bn weight, bn bias) against
`reference.conv_bn_backward`, in training and in eval mode, at every size tier, in the calling
contexts of real training: a drawn subset of inputs requires grad (a first layer's input does not;
a frozen backbone's weight does not), and grad_out comes in x's layout, another one, or stride-0
expanded as `out.sum()` hands it over. An input that does not require grad must get no gradient.
Also the output with autograd on, and the running stats after backward (backward must not update
them again)."""

from __future__ import annotations

from verify.properties.checks import check_against_oracle, training_step_results
from verify.strategies import sizes
from verify.strategies.configs import calling_contexts, cases

NAME = "gradients"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
# Also at the sizes of real networks: the other properties test what does not depend on size,
# or (running_stats: 2-4 calls an example) cost too much per element there.
SIZE_TIERS = sizes.ALL_TIERS


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier).flatmap(calling_contexts)


def check(variant, case) -> float:
    return check_against_oracle(variant, NAME, case, training_step_results(case), gradients=True)
