"""What makes the suite fast keeps what it draws and how it searches: shared strategy objects,
`target()` told only new bests where a database is set, the deterministic mode switched without
importing Inductor, a crash-isolated run's controller without torch, and its worker ending
without an interpreter teardown."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os

import hypothesis.core
import pytest
from hypothesis import settings, target
from hypothesis.database import InMemoryExampleDatabase

from fused import triton_support
from fused.registry import builtin_variant
from fused.variant import BN_FEATURES, CONV_FEATURES
from tests.helpers import ROOT, cli_env, run_cli
from verify import assert_rewriting, hunt
from verify.benchmarks import throughput
from verify.benchmarks.throughput import _examples
from verify.dtypes import HALF_DTYPES
from verify.properties import forward, gradients
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


def _hunt_eager(prop, tier: str, profile: str) -> ReportSession:
    """`prop` on the built-in eager variant at `tier` as `pytest verify` runs it, under the
    Hypothesis profile `profile` (the current one is restored); the run's tallies."""
    current = settings.get_current_profile_name()
    settings.load_profile(profile)
    session = ReportSession()
    try:
        hunt.hunt(prop, builtin_variant("eager"), tier, session)
    finally:
        settings.load_profile(current)
    return session


def test_a_property_test_scores_few_examples_and_still_targets(monkeypatch):
    """Hypothesis checks every scored example against its Pareto front while a database is set
    (about half its time per example when every example was scored, the front growing with
    them); a property test scores only its new bests and ties (the hill-climbing replays the best
    example with changes that keep its score: a front of one point), and still scores some (so
    Hypothesis still hill-climbs). Seeded: a random run's count of ties varies."""
    told = []

    def counting_target(score, label):
        told.append(score)
        return target(score, label=label)

    monkeypatch.setattr(hunt, "target", counting_target)
    monkeypatch.setattr(hypothesis.core, "global_force_seed", 0)
    settings.register_profile(
        "throughput-test", max_examples=60, derandomize=False, database=InMemoryExampleDatabase()
    )
    session = _hunt_eager(forward, "small", "throughput-test")
    examples = sum(t.examples for t in session.tallies.values())
    assert examples >= 60
    assert 1 <= len(set(told)) <= examples // 6
    assert told == sorted(told)


def test_without_a_database_every_example_is_scored(monkeypatch):
    """`ci` keeps no database, hence no Pareto front: every score is told, as before, so its
    derandomised draws (and the gallery's catches) do not move."""
    told = []
    monkeypatch.setattr(hunt, "target", lambda score, label: told.append(score))
    settings.register_profile("throughput-test-ci", max_examples=15, database=None)
    session = _hunt_eager(forward, "small", "throughput-test-ci")
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


def test_throughput_script_warns_of_cached_rewrites(tmp_path, monkeypatch, capsys):
    """Rewritten bytecode an earlier run left would flatter a base that rewrites libraries."""
    base, head, site = (tmp_path / name for name in ("base", "head", "site"))
    for root in (base, head, site):
        (root / "pkg" / "__pycache__").mkdir(parents=True)
        (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"")
    monkeypatch.setattr(throughput.sysconfig, "get_paths", lambda: {"purelib": str(site)})
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    sides = {"base": base, "head": head}
    throughput._warn_of_cached_rewrites(sides)
    assert capsys.readouterr().err == ""  # plain bytecode is the same for both sides
    cached = site / "pkg" / "__pycache__" / "mod.cpython-311-pytest-9.2.0.pyc"
    cached.write_bytes(b"")
    throughput._warn_of_cached_rewrites(sides)
    warning = capsys.readouterr().err
    assert (
        warning.startswith("warning: pytest's rewritten bytecode, left by a run that wrote")
        and str(cached) in warning
    )
    assert f"find {site} {base} {head} -name '*-pytest-*.pyc' -delete" in warning
    # a checkout holding the virtual environment: each file counted once
    assert throughput.cached_rewrites([tmp_path, site]) == [cached.resolve()]
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
    throughput._warn_of_cached_rewrites(sides)  # where bytecode is written, both sides cache
    assert capsys.readouterr().err == ""


def test_throughput_script_counts_one_property_and_tier():
    rows = [
        dict(variant="eager", property="forward", tier="small", examples=7),
        dict(variant="eager", property="forward", tier="tile", examples=3),
        dict(variant="eager", property="gradients", tier="small", examples=5),
        dict(variant="other", property="forward", tier="small", examples=11),
    ]
    assert _examples(rows, "forward", "small") == 7


_PROBE = """
import json
import sys

def pytest_sessionfinish(session):
    from _pytest.assertion.rewrite import AssertionRewritingHook

    role = "worker" if hasattr(session.config, "workerinput") else "controller"
    rewritten = sorted(
        name
        for name, module in list(sys.modules.items())
        if isinstance(getattr(module, "__loader__", None), AssertionRewritingHook)
    )
    loaded = [m for m in ("torch", "fused.registry", "hypothesis") if m in sys.modules]
    with open({directory!r} + "/" + role + ".json", "w") as f:
        json.dump(dict(loaded=loaded, rewritten=rewritten), f)


def pytest_unconfigure(config):
    role = "worker" if hasattr(config, "workerinput") else "controller"
    open({directory!r} + "/" + role + ".unconfigured", "w").close()
"""


@pytest.fixture(scope="module")
def isolated_run(tmp_path_factory) -> dict:
    """What the controller and the worker of `pytest verify/test_forward.py -k "eager and small"`
    had imported, and which modules pytest rewrote, each at the end of its session."""
    directory = tmp_path_factory.mktemp("isolated_run")
    (directory / "probe_of_the_run.py").write_text(_PROBE.format(directory=str(directory)))
    env = cli_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(directory)]))
    command = ["-m", "pytest", "verify/test_forward.py", "-q", "-p", "probe_of_the_run"]
    done = run_cli(command + ["-p", "no:cacheprovider", "-k", "eager and small"], env=env)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:]
    return {
        role: dict(
            json.loads((directory / f"{role}.json").read_text()),
            unconfigured=(directory / f"{role}.unconfigured").exists(),
        )
        for role in ("controller", "worker")
    }


def test_an_isolated_run_imports_torch_in_its_worker_only(isolated_run):
    """The controller of a crash-isolated run never runs a kernel: importing torch there (to ask
    for a GPU before Triton kernels are defined) was a second or more of every run's start-up.
    On a CPU-only torch build nothing in it imports torch."""
    if triton_support._torch_build_has_gpu_backend():
        pytest.skip("a CUDA or ROCm build of torch: the controller asks torch for a GPU")
    assert isolated_run["controller"]["loaded"] == ["hypothesis"]
    assert isolated_run["worker"]["loaded"] == ["torch", "fused.registry", "hypothesis"]


# The suite's plugins (pytest marks each as it imports it) and the modules imported before
# verify.plugin unmarks their package at pytest_cmdline_main: the package itself, what the plugin
# imports at import time, and the benchmarks' plugin package.
_SUITE_PLUGINS = (
    "verify.plugin",
    "verify.isolation",
    "verify.campaign",
    "verify.benchmarks.plugin",
)
_REWRITTEN_FIRST = ("verify", "verify.assert_rewriting", "verify.report", "verify.benchmarks")


@pytest.mark.parametrize("role", ["controller", "worker"])
def test_pytest_rewrites_the_tests_but_not_the_libraries(isolated_run, role):
    """pytest marks every module of a distribution with a pytest plugin for assertion rewriting,
    and without written bytecode (PYTHONDONTWRITEBYTECODE) redid it in every process: a second
    of each process's start-up (verify.assert_rewriting)."""
    rewritten = isolated_run[role]["rewritten"]
    assert "verify.plugin" in rewritten
    if role == "worker":
        assert "verify.test_forward" in rewritten  # a test file
    libraries = [
        name
        for name in rewritten
        if name.split(".")[0] in assert_rewriting.LIBRARIES
        and name not in _REWRITTEN_FIRST + _SUITE_PLUGINS
        and not name.rpartition(".")[2].startswith("test_")
    ]
    assert libraries == []


def test_the_gpu_question_reads_the_torch_build_without_importing_torch(tmp_path, monkeypatch):
    package = tmp_path / "torch"
    package.mkdir()
    spec = importlib.machinery.ModuleSpec("torch", None, origin=str(package / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    version = package / "version.py"
    for text, has_backend in (
        ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
        ("cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n", True),
        ("cuda = None\nhip = '6.4'\n", True),
        ("cuda = None\n", True),  # an unknown layout: ask torch
        ("cuda = (\n", True),  # unreadable: ask torch
    ):
        version.write_text(text)
        assert triton_support._torch_build_has_gpu_backend() is has_backend, text
    version.unlink()
    assert triton_support._torch_build_has_gpu_backend() is True


def test_an_isolation_worker_ends_once_it_has_handed_over_its_results(isolated_run):
    """Right after xdist's last message: pytest's unconfigure (two full garbage collections)
    and the interpreter's teardown were a tenth of a short run; the controller still ends as
    usual."""
    assert isolated_run["controller"]["unconfigured"]
    assert not isolated_run["worker"]["unconfigured"]


def test_an_isolation_worker_ends_without_tearing_its_interpreter_down():
    """What it printed is flushed; the teardown (about a second with torch loaded) is skipped."""
    code = (
        "import atexit, sys\n"
        "from verify.isolation import _exit_without_teardown\n"
        "atexit.register(print, 'teardown ran')\n"
        "sys.stdout.write('printed before the end')\n"
        "_exit_without_teardown()\n"
        "print('after the end')\n"
    )
    done = run_cli(["-c", code])
    assert (done.returncode, done.stdout) == (0, "printed before the end")


def test_time_to_catch_puts_one_planted_bug_under_test():
    source = throughput._CATCH_VARIANT.format(
        module="tests.gallery.bugs", attr="ALL", name="one_pass_variance"
    )
    namespace: dict = {}
    exec(compile(source, "catch_one_pass_variance.py", "exec"), namespace)
    assert namespace["VARIANT"].name == "one_pass_variance"


def _ci_cases(prop, tier: str, monkeypatch) -> list[str]:
    """The cases `pytest verify` draws for eager under the `ci` profile, in order."""
    drawn: list[str] = []
    check = hunt.legality.check
    monkeypatch.setattr(
        hunt.legality, "check", lambda case: (drawn.append(case.to_json()), check(case))
    )
    _hunt_eager(prop, tier, "ci")
    return drawn


# sha1 of the ci cases of eager, one JSON line each, as `CI=true pytest verify` drew them at
# 2cdbb35; building the strategy objects once since then left all 3,070 ci cases of that run as
# they were.
CI_DRAWS = {
    ("forward", "small"): "ff0070ecf619382f26b461e3d822ee43681a1249",
    ("gradients", "small"): "4caa64b8b893ccf362ddfe7bd2e681575558a931",
    ("forward", "channels"): "b2d965f79856e233f6e060b22e891a248b9b39a5",
}


@pytest.mark.parametrize(("name", "tier"), sorted(CI_DRAWS))
def test_the_ci_draws_stay_as_the_gallery_was_calibrated_on(name, tier, monkeypatch):
    """The gallery's catches are calibrated on the derandomised `ci` draws: a change to the
    strategies that moves them (a new draw, a different order, fewer spans) must say so here, and
    tests/test_gallery.py must be rerun (docs/performance.md: what a flatter draw cost)."""
    prop = {"forward": forward, "gradients": gradients}[name]
    drawn = _ci_cases(prop, tier, monkeypatch)
    digest = hashlib.sha1("\n".join(drawn).encode()).hexdigest()
    assert digest == CI_DRAWS[(name, tier)], (digest, len(drawn), drawn[:2])
