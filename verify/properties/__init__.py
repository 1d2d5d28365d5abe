"""The suite's properties. Each is a module `verify/properties/<NAME>.py` with the same shape
(SHAPE, checked when this package is imported):

    NAME            its one name: test `verify/test_<NAME>.py`, reports, the end-of-run table
    APPLIES_TO      the variants it applies to, as a skip reason says it ("every variant", ...)
    SIZE_TIERS      the size tiers it runs at (`verify.strategies.sizes`)
    EXAMPLE_SHARE   its examples per tier as a multiple of the profile's (`verify.hunt`)
    strategy(variant, tier) -> a Hypothesis strategy of `Case`s in that tier, or None where the
                    property does not apply to the variant
    check(variant, case) -> the worst error as a fraction of its bound, or raises
                    `verify.report.PropertyFailure`

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

SHAPE = ("NAME", "APPLIES_TO", "SIZE_TIERS", "EXAMPLE_SHARE", "strategy", "check")

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


def check_shape(module) -> None:
    """Raise TypeError naming what a property module lacks of SHAPE."""
    missing = [attribute for attribute in SHAPE if not hasattr(module, attribute)]
    if missing:
        raise TypeError(f"property module {module.__name__} lacks {', '.join(missing)} (SHAPE)")


for _module in PROPERTIES.values():
    check_shape(_module)
