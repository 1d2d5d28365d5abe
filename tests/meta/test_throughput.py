"""What makes the suite fast keeps what it draws and how it searches: shared strategy objects,
`target()` told only new bests where a database is set, the deterministic mode switched without
importing Inductor."""

from __future__ import annotations

from hypothesis import settings, target
from hypothesis.database import InMemoryExampleDatabase

from fused.registry import builtin_variant
from fused.variant import BN_FEATURES, CONV_FEATURES
from tests.helpers import run_cli
from verify import hunt
from verify.benchmarks.throughput import _examples
from verify.dtypes import HALF_DTYPES
from verify.properties import forward
from verify.report import ReportSession
from verify.strategies.configs import geometry
from verify.strategies.shared import shared

ALL_FEATURES = frozenset(CONV_FEATURES | BN_FEATURES | set(HALF_DTYPES) | {"autocast"})


def test_shared_strategies_are_built_once_per_argument_list():
    assert geometry(ALL_FEATURES, tier="tile") is geometry(ALL_FEATURES, tier="tile")
    assert geometry(ALL_FEATURES, tier="tile") is not geometry(ALL_FEATURES, tier="split")
    built = []

    @shared
    def strategy(values):
        built.append(values)
        return object()

    assert strategy([1, 2]) is not strategy([1, 2])  # unhashable: built afresh, not refused
    assert len(built) == 2


def test_target_is_told_only_new_bests(monkeypatch):
    told = []
    monkeypatch.setattr(hunt, "target", lambda score, label: told.append((score, label)))
    best = hunt.RunningBest()
    for score in (0.1, 0.05, 0.2, 0.2, 0.1, 3.0):
        best.observe(score, "forward")
    assert told == [(0.1, "forward"), (0.2, "forward"), (0.2, "forward"), (3.0, "forward")]


def test_a_property_test_scores_few_examples_and_still_targets(monkeypatch):
    """Hypothesis checks every scored example against its Pareto front while a database is set
    (about half its time per example when every example was scored); a property test scores
    only its new bests, and still scores some (so Hypothesis still hill-climbs)."""
    told = []

    def counting_target(score, label):
        told.append(score)
        return target(score, label=label)

    monkeypatch.setattr(hunt, "target", counting_target)
    profile = settings.get_current_profile_name()
    settings.register_profile(
        "throughput-test", max_examples=60, derandomize=False, database=InMemoryExampleDatabase()
    )
    settings.load_profile("throughput-test")
    session = ReportSession()
    try:
        hunt.hunt(forward, builtin_variant("eager"), "small", session)
    finally:
        settings.load_profile(profile)
    examples = sum(t.examples for t in session.tallies.values())
    assert examples >= 60
    assert 1 <= len(told) <= examples // 3
    assert told == sorted(told)


def test_without_a_database_every_example_is_scored(monkeypatch):
    """`ci` keeps no database, hence no Pareto front: every score is told, as before, so its
    derandomised draws (and the gallery's catches) do not move."""
    told = []
    monkeypatch.setattr(hunt, "target", lambda score, label: told.append(score))
    profile = settings.get_current_profile_name()
    settings.register_profile("throughput-test-ci", max_examples=15, database=None)
    settings.load_profile("throughput-test-ci")
    session = ReportSession()
    try:
        hunt.hunt(forward, builtin_variant("eager"), "small", session)
    finally:
        settings.load_profile(profile)
    assert len(told) == sum(t.examples for t in session.tallies.values()) >= 15


def test_deterministic_mode_without_importing_inductor_still_sets_inductors_flag():
    """Inductor loaded inside the context (a kernel under torch.compile) is deterministic there,
    and restored afterwards; outside a compile Inductor is never imported."""
    code = """
import sys, torch
from verify.runner import uninitialized_memory_filled
with uninitialized_memory_filled():
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory
    assert "torch._inductor.config" not in sys.modules
    import torch._inductor.config as inductor_config
    assert inductor_config.deterministic
assert not torch.are_deterministic_algorithms_enabled() and not inductor_config.deterministic
with uninitialized_memory_filled():
    assert inductor_config.deterministic
assert not inductor_config.deterministic
"""
    done = run_cli(["-c", code])
    assert done.returncode == 0, done.stdout[-2000:]


def test_throughput_script_counts_one_property_and_tier():
    rows = [
        dict(variant="eager", property="forward", tier="small", examples=7),
        dict(variant="eager", property="forward", tier="tile", examples=3),
        dict(variant="eager", property="gradients", tier="small", examples=5),
        dict(variant="other", property="forward", tier="small", examples=11),
    ]
    assert _examples(rows, "forward", "small") == 7
