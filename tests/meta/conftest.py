"""Fixtures of the meta tests: a report session of their own, and subprocess runs of
`pytest verify` / `python -m verify.replay` shared by the report and replay tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.meta.kernels import VARIANT_FILE
from verify import report

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def report_session() -> report.ReportSession:
    """A fresh report session for properties run in-process (it overrides the plugin's fixture of
    the same name), so their tallies stay out of the real run's end-of-run table."""
    return report.ReportSession()


def cli_env() -> dict:
    env = dict(os.environ, CI="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    # The checkout first, whatever state its editable install is in.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_cli(args, *, timeout=120, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run `python ARGS` from the checkout; text output, stdout and stderr together."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=cli_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


@pytest.fixture(scope="session")
def variant_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("variants") / "meta_variants.py"
    path.write_text(VARIANT_FILE)
    return path


def _forward_run(tmp_path_factory, variant_file, attr):
    out = tmp_path_factory.mktemp(f"run_{attr.lower()}")
    # The small size tier only: one failing test, hence one report and one replay line.
    proc = run_cli(["-m", "pytest", "verify/test_forward.py", "-q", "-p", "no:cacheprovider",
                    "-k", "small",
                    "--variant", f"{variant_file}:{attr}",
                    "--verify-repro-dir", str(out / "repro"),
                    "--verify-summary-json", str(out / "summary.json")])
    return proc, out


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory, variant_file):
    """`pytest verify/test_forward.py --variant FILE:GOOD` (CI profile, 25 examples)."""
    return _forward_run(tmp_path_factory, variant_file, "GOOD")


@pytest.fixture(scope="session")
def failing_run(tmp_path_factory, variant_file):
    """The same with a variant that forgets to subtract the mean."""
    return _forward_run(tmp_path_factory, variant_file, "NO_MEAN")
