"""Run a property as a Hypothesis test: draw cases of one size tier for one variant, check each,
record the tally in the run's `ReportSession`, and tell the kernel's failures from the suite's own.

Each `verify/test_<property>.py` is one call of `hunt`; a property itself (`verify.properties`)
only knows how to draw a case and check it."""

from __future__ import annotations

import math

from hypothesis import given, settings, target
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from verify import isolation, legality, runner
from verify.report import PropertyFailure, ReportSession
from verify.strategies.sizes import INT32_TIER, NETWORK_TIERS

# Share of the Hypothesis profile's max_examples each size tier gets (at least one example): the
# small tier keeps the whole count (fast, shrinks well); the larger tiers cost more per example.
# ci (25): 25 small, 5 tile, 3 split, 2 large, 3 wide; fuzz (2000): 2000, 400, 240, 160, 240.
TIER_SHARE = {"small": 1.0, "tile": 0.2, "split": 0.12, "large": 0.08, "wide": 0.12}
# The network tiers (sizes of real networks, up to 2^22 values a tensor): ci 2 or 3 each (the
# simplest case, past the first boundary, then drawn ones); long and crowd, up to a second an
# example, get fewer than channels and grid, tens of milliseconds.
TIER_SHARE.update(channels=0.12, long=0.08, grid=0.12, crowd=0.08)
# Past 2^31 elements (cuda only): one example in ci and dev, a few under fuzz.
TIER_SHARE[INT32_TIER] = 0.002


# Triton kernels on Triton's CPU interpreter run each program instance in Python, 100-1000x slower
# than native kernels: they get this share of the examples (ci: 6 small, 1 per larger tier).
INTERPRETED_SHARE = 0.25


def examples_for(tier: str, max_examples: int) -> int:
    return max(1, round(TIER_SHARE[tier] * max_examples))


def _interpreted(variant) -> bool:
    if getattr(variant, "triton", False):
        from fused.triton_support import interpreting

        return interpreting()
    return False


def _example_share(variant) -> float:
    return INTERPRETED_SHARE if _interpreted(variant) else 1.0


def tier_unavailable(variant, tier: str) -> str:
    """Why `variant` does not run at `tier` here ("" where it does): a network-tier example
    (up to 2^22 values a tensor) would take hours on Triton's CPU interpreter."""
    if tier in NETWORK_TIERS + (INT32_TIER,) and _interpreted(variant):
        return (
            f"size tier {tier!r} (sizes of real networks) is too large for Triton's CPU "
            "interpreter: run it where a GPU compiles the kernel"
        )
    return ""


def hunt(prop_module, variant, tier: str, session: ReportSession) -> None:
    """Run the property on `variant` as a Hypothesis test over cases of size tier `tier`, with
    the tier's share of the current profile's examples, recording into `session`."""
    __tracebackhide__ = True
    unavailable = tier_unavailable(variant, tier)
    if unavailable:
        import pytest

        pytest.skip(unavailable)
    label = f"{prop_module.NAME}[{variant.name}-{tier}]"
    # `search`'s source is part of Hypothesis's digest of the test (below): it must stay exactly
    # as it is, or every derandomised draw and every example database key changes. So the session
    # is bound here rather than named in it.
    run_example = _recording_into(session, prop_module.strategy(variant, tier))

    def search(data):
        run_example(prop_module, variant, data, tier)

    search.__name__ = search.__qualname__ = f"test_{prop_module.NAME}"
    # Hypothesis keys its example database and derandomised seed by the test function's source;
    # every (property, variant, tier) shares this source, so add the label to the digest, as
    # Hypothesis's own pytest plugin does for parametrised tests.
    search._hypothesis_internal_add_digest = label.encode()  # type: ignore[attr-defined]
    profile = settings.default
    assert profile is not None  # Hypothesis always has a current profile
    share = _example_share(variant) * prop_module.EXAMPLE_SHARE
    budget = examples_for(tier, round(profile.max_examples * share))
    with runner.uninitialized_memory_filled():
        given(data=st.data())(settings(settings.default, max_examples=budget)(search))()


def _recording_into(session: ReportSession, strategy):
    """`run_example` with its session, the test's case strategy (built once: building it per
    example cost as much as drawing from it) and a fresh `RunningBest` bound."""
    # Without a database (the derandomised `ci` profile) Hypothesis keeps no Pareto front, so
    # every score is told, as before: `ci`'s draws and the gallery's calibrated catches stay.
    best = RunningBest() if getattr(settings.default, "database", None) is not None else None

    def run(prop_module, variant, data, tier: str) -> float:
        __tracebackhide__ = True
        return run_example(prop_module, variant, data, session, tier, strategy=strategy, best=best)

    return run


class RunningBest:
    """Tells Hypothesis's `target()` a score only when it is at least the best of the run so far.

    Hypothesis hill-climbs from the best-scoring example and accepts a move that scores at least
    as well, so scores below the running best steer nothing; but while an example database is
    set, it also keeps a Pareto front of every scored example, at a dominance check against the
    front per example: half of Hypothesis's time per example in a `dev` or `fuzz` run. Reporting
    only new bests keeps the hill-climbing and leaves the front a handful of examples long.
    (Measured on the planted one-pass variance, 48 seeds: without `target()` at all the median
    example to catch it is about the same, but the worst is 2-3x later.)"""

    def __init__(self) -> None:
        self.best = -math.inf

    def observe(self, score: float, label: str) -> None:
        if score >= self.best:
            self.best = score
            target(score, label=label)


class SuiteError(Exception):
    """convbn-verify's own code failed (an illegal case it built, a bug in the oracle or the
    bounds): never the kernel's fault, and reported as such."""


def run_example(
    prop_module,
    variant,
    data,
    session: ReportSession,
    tier: str = "small",
    *,
    strategy=None,
    best: RunningBest | None = None,
) -> float:
    """Draw one case of size tier `tier` for `variant` (from `strategy`, by default the
    property's), check the property on it, and ask Hypothesis to search toward the largest error
    relative to its bound (through `best`, when given, only at a new best).

    What the kernel raises (`runner.KernelRaised`) or how it breaks the calling contract is a
    finding about the kernel; any other exception is the suite's own failure and says so."""
    if strategy is None:
        strategy = prop_module.strategy(variant, tier)
    case = data.draw(strategy, label="case")
    isolation.note_case(
        variant.name, prop_module.NAME, case, tier, interpreted=_interpreted(variant)
    )
    try:
        legality.check(case)
        ratio = prop_module.check(variant, case)
    except PropertyFailure as failure:
        session.record(variant.name, prop_module.NAME, failure.ratio, case, failed=True, tier=tier)
        session.complete(failure)
        raise
    except (runner.KernelRaised, runner.ContractViolation) as error:
        session.record(variant.name, prop_module.NAME, math.inf, case, failed=True, tier=tier)
        finding = runner.kernel_failure(error, variant.name, prop_module.NAME, case)
        raise session.complete(finding) from finding.__cause__
    except Exception as error:  # noqa: BLE001 - anything else is convbn-verify's own bug
        raise SuiteError(
            f"convbn-verify failed on its own (not a finding about variant {variant.name!r}): "
            f"property {prop_module.NAME!r} raised {type(error).__name__}: {error}\n"
            f"  case: {case.describe()}\n"
            f"  replay: {session.replay_command(variant.name, prop_module.NAME, case)}\n"
            "  Please report this with the case above."
        ) from error
    session.record(variant.name, prop_module.NAME, ratio, case, tier=tier)
    if currently_in_test_context():
        score = min(ratio, 1e12) if math.isfinite(ratio) else 1e12
        if best is None:
            target(score, label=prop_module.NAME)
        else:
            best.observe(score, prop_module.NAME)
    return ratio
