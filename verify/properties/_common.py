"""What every property shares: compare results, record the tally, steer Hypothesis, report."""
from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st, target
from hypothesis.control import currently_in_test_context

from verify import isolation, legality, oracle, report, runner, tolerance
from verify.case import largest_finite
from verify.comparison import compare
from verify.oracle import Results


# Share of the Hypothesis profile's max_examples each size tier gets (at least one example): the
# small tier keeps the whole count (fast, shrinks well); the larger tiers cost more per example.
# ci (25): 25 small, 5 tile, 3 split, 2 large, 3 wide; fuzz (2000): 2000, 400, 240, 160, 240.
TIER_SHARE = {"small": 1.0, "tile": 0.2, "split": 0.12, "large": 0.08, "wide": 0.12}


# Triton kernels on Triton's CPU interpreter run each program instance in Python, 100-1000x slower
# than native kernels: they get this share of the examples (ci: 6 small, 1 per larger tier).
INTERPRETED_SHARE = 0.25


def examples_for(tier: str, max_examples: int) -> int:
    return max(1, round(TIER_SHARE[tier] * max_examples))


def _example_share(variant) -> float:
    if getattr(variant, "triton", False):
        from fused.triton_support import interpreting
        if interpreting():
            return INTERPRETED_SHARE
    return 1.0


def hunt(prop_module, variant, tier: str) -> None:
    """Run the property on `variant` as a Hypothesis test over cases of size tier `tier`, with
    the tier's share of the current profile's examples."""
    __tracebackhide__ = True
    label = f"{prop_module.NAME}[{variant.name}-{tier}]"

    def search(data):
        run_example(prop_module, variant, data, tier)

    search.__name__ = search.__qualname__ = f"test_{prop_module.NAME}"
    # Hypothesis keys its example database and derandomised seed by the test function's source;
    # every (property, variant, tier) shares this source, so add the label to the digest, as
    # Hypothesis's own pytest plugin does for parametrised tests.
    search._hypothesis_internal_add_digest = label.encode()
    share = _example_share(variant) * getattr(prop_module, "EXAMPLE_SHARE", 1.0)
    budget = examples_for(tier, round(settings.default.max_examples * share))
    with runner.uninitialized_memory_filled():
        given(data=st.data())(settings(settings.default, max_examples=budget)(search))()


class SuiteError(Exception):
    """convbn-verify's own code failed (an illegal case it built, a bug in the oracle or the
    bounds): never the kernel's fault, and reported as such."""


def run_example(prop_module, variant, data, tier: str = "small") -> float:
    """Draw one case of size tier `tier` for `variant`, check the property on it, and ask
    Hypothesis to search toward the largest error relative to its bound.

    What the kernel raises (`runner.KernelRaised`) or how it breaks the calling contract is a
    finding about the kernel; any other exception is the suite's own failure and says so."""
    case = data.draw(prop_module.strategy(variant, tier), label="case")
    isolation.note_case(variant.name, prop_module.NAME, case, tier)
    try:
        legality.check(case)
        ratio = prop_module.check(variant, case)
    except report.PropertyFailure as failure:
        report.record(variant.name, prop_module.NAME, failure.ratio, case, failed=True, tier=tier)
        raise
    except (runner.KernelRaised, runner.ContractViolation) as error:
        report.record(variant.name, prop_module.NAME, math.inf, case, failed=True, tier=tier)
        cause = error.error if isinstance(error, runner.KernelRaised) else error
        what = (f"raised {type(cause).__name__} in {error.stage} on a legal case: {cause}"
                if isinstance(error, runner.KernelRaised) else f"broke the calling contract: {error}")
        raise report.PropertyFailure(report.failure_message(
            variant.name, prop_module.NAME, case, [what])) from cause
    except Exception as error:  # noqa: BLE001 - anything else is convbn-verify's own bug
        raise SuiteError(
            f"convbn-verify failed on its own (not a finding about variant {variant.name!r}): "
            f"property {prop_module.NAME!r} raised {type(error).__name__}: {error}\n"
            f"  case: {case.describe()}\n"
            f"  replay: {report.replay_command(variant.name, prop_module.NAME, case)}\n"
            "  Please report this with the case above.") from error
    report.record(variant.name, prop_module.NAME, ratio, case, tier=tier)
    if currently_in_test_context():
        target(min(ratio, 1e12) if math.isfinite(ratio) else 1e12, label=prop_module.NAME)
    return ratio


def fail(variant, prop: str, case, details: list[str], ratio: float = math.inf) -> None:
    __tracebackhide__ = True  # the report is the message; these frames are the suite's own
    raise report.PropertyFailure(report.failure_message(variant.name, prop, case, details), ratio)


def assert_close(variant, prop: str, case, actual: Results, exact: Results, allowed: Results,
                 names, *, context: str = "") -> float:
    """Every named result of `actual` within `allowed` of `exact`; returns the worst ratio."""
    __tracebackhide__ = True
    largest = largest_finite(case.dtype)
    comparisons = [compare(name, getattr(actual, name), getattr(exact, name),
                           getattr(allowed, name), largest=largest) for name in names]
    worst = max((c.ratio for c in comparisons), default=0.0)
    failed = [c for c in comparisons if not c.ok]
    if failed:
        details = ([context] if context else []) + [c.describe() for c in failed]
        details += [c.describe() for c in comparisons if c.ok and getattr(exact, c.name) is not None]
        fail(variant, prop, case, details, ratio=worst)
    return worst


def training_step_results(case) -> tuple:
    """What a call with backward must get right: the output, the gradients of the inputs that
    require grad, and the running stats after backward."""
    return (("out",) + tuple("grad_" + n for n in case.requires_grad)
            + ("running_mean", "running_var"))


def check_against_oracle(variant, prop: str, case, names, *, gradients: bool) -> float:
    """One call of the variant (with backward if `gradients`) against the oracle on `names`."""
    __tracebackhide__ = True
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=gradients)
    allowed = tolerance.bounds(case, arrays, exact, gradients=gradients)
    actual, _ = runner.run(variant, case, arrays, gradients=gradients)
    return assert_close(variant, prop, case, actual, exact, allowed, names)
