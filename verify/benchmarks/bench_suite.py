"""How fast is the suite itself? One round is one Hypothesis run of a property (`forward`,
`gradients`) on the built-in `eager` variant at one size tier, in-process, through `hunt`, as a
`fuzz` run draws it (random, an example database set: a fresh in-memory one per round, so nothing
is replayed): ``ROUND_EXAMPLES`` at the small tier and the tier's share of them at the others
(`verify.hunt.TIER_SHARE`). (Hypothesis refuses a database with derandomised draws, and without
one it skips work a real run does, such as its Pareto front of target scores.) ``extra_info`` gets
``examples`` and ``examples_per_s``.

Each round is paired with a fixed round of the oracle (`reference.conv_bn` forward and backward on
one small case, a few times): the regression gate (`python -m verify.compare`) judges the
per-round ratio suite / oracle, as it judges a kernel against eager (`verify.benchmarks.harness`),
so a commit that makes the suite slower per example fails the gate like a slower kernel. The ten
benchmarks are judged together as the variant ``suite:eager``.

Run: ``pytest verify/benchmarks/bench_suite.py --benchmark-only``. In a default run (benchmarks
disabled) each runs once, with a handful of examples, so the path cannot rot.

Side-by-side examples/s of two checkouts, start-up and crash isolation included:
``python -m verify.benchmarks.throughput --base PATH``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.database import InMemoryExampleDatabase

import reference
from fused.registry import builtin_variant
from verify.benchmarks.harness import timed
from verify.hunt import examples_for, hunt
from verify.properties import PROPERTIES
from verify.report import ReportSession
from verify.strategies.sizes import SIZE_TIERS

VARIANT = "eager"
ROUND_EXAMPLES = 50
SMOKE_EXAMPLES = 5  # benchmarks disabled: one round, to keep `pytest verify` fast
ROUNDS = 11  # enough for the regression gate's rank test (see verify.benchmarks.harness)
BASELINE = "oracle fixed case"
_PROFILE = "convbn-suite-bench"


def _oracle_round():
    """The paired baseline: a fixed amount of the same kind of work (NumPy in small pieces)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3)) / 5.0
    grad_out = rng.standard_normal((2, 4, 5, 5))

    def step():
        for _ in range(20):
            reference.conv_bn(x, w, padding=1)
            reference.conv_bn_backward(grad_out, x, w, padding=1)

    return step


def _hunt_round(prop, tier: str, examples: int):
    """One Hypothesis run of `prop` at `tier` on eager; returns examples run."""
    variant = builtin_variant(VARIANT)
    previous = settings.get_current_profile_name()

    def run() -> int:
        settings.register_profile(
            _PROFILE,
            parent=settings.get_profile(previous),
            max_examples=examples,
            derandomize=False,
            database=InMemoryExampleDatabase(),
        )
        settings.load_profile(_PROFILE)
        session = ReportSession()
        try:
            hunt(prop, variant, tier, session)
        finally:
            settings.load_profile(previous)
        return sum(t.examples for t in session.tallies.values())

    return run


@pytest.mark.parametrize("tier", SIZE_TIERS)
@pytest.mark.parametrize("name", ["forward", "gradients"])
def test_suite_throughput(benchmark, name, tier):
    prop = PROPERTIES[name]
    benchmark.group = f"suite throughput: {prop.NAME} on {VARIANT}, {ROUND_EXAMPLES} examples"
    benchmark.extra_info.update(variant=f"suite:{VARIANT}", property=prop.NAME, tier=tier)
    measuring = not getattr(benchmark, "disabled", False)
    if not measuring:
        assert benchmark(_hunt_round(prop, tier, SMOKE_EXAMPLES)) >= 1
        return
    baseline_times: list[float] = []
    examples = benchmark.pedantic(
        _hunt_round(prop, tier, ROUND_EXAMPLES),
        setup=timed(_oracle_round(), baseline_times),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    assert examples >= examples_for(tier, ROUND_EXAMPLES)
    times = benchmark.stats.stats.data
    baseline_times = baseline_times[-len(times) :]  # the warm-up round ran setup too
    benchmark.extra_info["examples"] = examples
    benchmark.extra_info["examples_per_s"] = round(examples / benchmark.stats.stats.median, 2)
    benchmark.extra_info["baseline"] = BASELINE
    benchmark.extra_info["time_vs_baseline"] = [
        round(t / b, 6) for t, b in zip(times, baseline_times, strict=False)
    ]
