"""verify.assert_rewriting unmarks the libraries in pytest's rewriting hook, and nothing else."""

from __future__ import annotations

import os
import sys

import pytest
from _pytest.assertion.rewrite import AssertionRewritingHook

from tests.helpers import ROOT, cli_env, run_cli
from verify.assert_rewriting import leave_unrewritten


class _Hook:
    def __init__(self, *marked: str):
        self._must_rewrite = set(marked)
        self._marked_for_rewrite_cache = {name: True for name in marked}


def test_the_libraries_are_unmarked_and_the_rest_kept():
    hook = _Hook("hypothesis", "fused", "verify", "pytest_benchmark", "myplugin")
    unmarked = leave_unrewritten(meta_path=[object(), hook])
    assert sorted(unmarked) == ["fused", "hypothesis", "verify"]
    assert hook._must_rewrite == {"pytest_benchmark", "myplugin"}
    # pytest caches its verdict per module name: a stale "rewrite" must not survive
    assert hook._marked_for_rewrite_cache == {}


def test_a_hook_whose_internals_differ_is_left_alone():
    hook = _Hook("hypothesis")
    hook._must_rewrite = frozenset(hook._must_rewrite)  # type: ignore[assignment]
    assert leave_unrewritten(meta_path=[hook]) == []
    assert hook._must_rewrite == {"hypothesis"}
    assert leave_unrewritten(meta_path=[]) == []


def test_a_session_of_other_tests_keeps_pytests_marks():
    """This session runs tests/, not the suite: the plugin leaves pytest's marks alone. The
    internals it edits in a run of the suite are where it expects them (where pytest renames
    them, the unmarking silently stops: this says so first)."""
    hooks = [f for f in sys.meta_path if isinstance(f, AssertionRewritingHook)]
    if not hooks:
        pytest.skip("run with --assert=plain: pytest rewrites nothing")
    for hook in hooks:
        assert isinstance(hook._must_rewrite, set)
        assert isinstance(hook._marked_for_rewrite_cache, dict)
        assert "hypothesis" in hook._must_rewrite  # Hypothesis ships a pytest plugin


_BENCH_PROBE = """
import sys

from _pytest.assertion.rewrite import AssertionRewritingHook


def pytest_collection_finish(session):
    module = sys.modules["verify.benchmarks.bench_oracle"]
    print("bench_oracle rewritten:", isinstance(module.__loader__, AssertionRewritingHook))
"""


def test_benchmark_files_collected_outside_the_checkout_are_still_rewritten(tmp_path):
    """From elsewhere no ini names bench_*.py; verify.plugin collects them, and marks them for
    rewriting, as pytest does for the test files it names, inside a package it unmarked."""
    (tmp_path / "bench_probe.py").write_text(_BENCH_PROBE)
    env = cli_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    done = run_cli(
        ["-m", "pytest", "--pyargs", "verify.benchmarks.bench_oracle", "--collect-only", "-q"]
        + ["-p", "no:cacheprovider", "-p", "bench_probe"],
        cwd=tmp_path,
        env=env,
    )
    assert "bench_oracle rewritten: True" in done.stdout, done.stdout[-3000:]
