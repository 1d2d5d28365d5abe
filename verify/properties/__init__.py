"""The suite's properties. Each module has NAME, strategy(variant, tier) -> a Hypothesis strategy
of `Case`s in that size tier (None where the property does not apply to the variant), optionally
SIZE_TIERS (the tiers it runs at; default all of `verify.strategies.sizes.SIZE_TIERS`), and
check(variant, case), which returns the worst error as a fraction of its bound or raises
`verify.report.PropertyFailure`.

PROPERTIES is in run order: the numeric properties first (what the kernel computes), then the
calling contexts and invariants, the derivative checks, memory, ops and compile, and the contract rules
last, so that under `-x` the first failure a user reads is the most important one."""
from verify.properties import (bad_inputs, compile, custom_ops, determinism, devices,
                               finite_differences, forward, grad_mode, gradcheck, gradients,
                               invariants, mutation, running_stats, saved_memory, second_order)

PROPERTIES = {module.NAME: module for module in (
    forward, gradients, running_stats, grad_mode, determinism, invariants, mutation,
    finite_differences, gradcheck, second_order, saved_memory, custom_ops, compile, devices,
    bad_inputs)}
