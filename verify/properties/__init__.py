"""The suite's properties. Each module has NAME, strategy(variant) -> a Hypothesis strategy of
`Case`s (None where the property does not apply to the variant), and check(variant, case), which
returns the worst error as a fraction of its bound or raises `verify.report.PropertyFailure`."""
from verify.properties import (bad_inputs, custom_ops, devices, finite_differences, forward,
                               gradcheck, gradients, invariants, mutation, running_stats,
                               saved_memory)

PROPERTIES = {module.NAME: module for module in (
    forward, gradients, gradcheck, finite_differences, running_stats, invariants, bad_inputs,
    mutation, saved_memory, custom_ops, devices)}
