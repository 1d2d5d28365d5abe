"""The suite's properties. Each module has NAME, strategy(variant, tier) -> a Hypothesis strategy
of `Case`s in that size tier (None where the property does not apply to the variant), optionally
SIZE_TIERS (the tiers it runs at; default all of `verify.strategies.sizes.SIZE_TIERS`), and
check(variant, case), which returns the worst error as a fraction of its bound or raises
`verify.report.PropertyFailure`. One name per property: module `verify/properties/<NAME>.py`,
test `verify/test_<NAME>.py`, and `<NAME>` in failure reports and the end-of-run table.

PROPERTIES is in run order: the numeric properties first (what the kernel computes), then the
calling contexts and invariants, the derivative checks, memory, ops and compile, and the contract
rules last, so that under `-x` the first failure a user reads is the most important one."""

from verify.properties import (
    bad_inputs,
    compile,
    cuda,
    determinism,
    finite_differences,
    forward,
    grad_mode,
    gradcheck,
    gradients,
    no_mutation,
    opcheck,
    programs,
    running_stats,
    saved_memory,
    second_order,
    shift_invariance,
)

PROPERTIES = {
    module.NAME: module
    for module in (
        forward,
        gradients,
        running_stats,
        grad_mode,
        determinism,
        shift_invariance,
        no_mutation,
        programs,
        finite_differences,
        gradcheck,
        second_order,
        saved_memory,
        opcheck,
        compile,
        cuda,
        bad_inputs,
    )
}
