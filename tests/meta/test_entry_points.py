"""The installed package registers its pytest plugins (pytest11 entry points), so
`pytest --pyargs verify` works from any directory, benchmarks included."""

from __future__ import annotations

import subprocess
import sys
import venv
from importlib.metadata import distribution
from pathlib import Path

import pytest
import tomllib

from tests.helpers import ROOT, cli_env, run_cli
from tests.meta.helpers import VARIANT_FILE

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DECLARED = PROJECT["entry-points"]["pytest11"]


def test_installed_metadata_declares_the_plugins():
    """Fails when pyproject's entry points break or the installed metadata is stale."""
    installed = {
        ep.name: ep.value
        for ep in distribution("convbn-verify").entry_points
        if ep.group == "pytest11"
    }
    assert installed == DECLARED
    assert set(DECLARED) == {"verify.plugin", "verify.benchmarks.plugin"}
    for name, value in DECLARED.items():
        assert name == value  # same name as the root conftest's pytest_plugins: registered once
        module = __import__(value, fromlist=["_"])
        assert hasattr(module, "pytest_addoption")


def _outside_env() -> dict:
    """The installed package, not the checkout."""
    return cli_env(PYTHONPATH=None, PYTEST_ADDOPTS=None)


def _run_outside(python: str, args: list[str], cwd: Path, timeout: int = 300):
    return run_cli(
        ["-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=_outside_env(),
        python=python,
        timeout=timeout,
    )


def _check_user_repository(python: str, repo: Path):
    (repo / "my_kernel.py").write_text(VARIANT_FILE)
    done = _run_outside(
        python, ["--pyargs", "verify.test_forward", "--variant", "my_kernel.py:GOOD"], repo
    )
    assert done.returncode == 0, done.stdout
    assert "convbn-verify: examples and worst error" in done.stdout and "meta_good" in done.stdout
    # The package, not the file: bench_*.py must be collected without the checkout's ini.
    bench = _run_outside(
        python,
        [
            "--pyargs",
            "verify.benchmarks",
            "-k",
            "torch_conv_bn",
            "--benchmark-only",
            "--benchmark-min-rounds=1",
            "--benchmark-max-time=0.01",
            "--benchmark-warmup=off",
            "-m",
            "not cuda",
        ],
        repo,
    )
    assert bench.returncode == 0, bench.stdout
    assert " passed" in bench.stdout and " skipped" not in bench.stdout, bench.stdout
    assert "benchmark" in bench.stdout and "Mean" in bench.stdout  # pytest-benchmark's table


def test_pyargs_from_a_user_repository(tmp_path):
    """The package as installed in this environment, run from a directory that is not the
    checkout (no root conftest, no ini)."""
    _check_user_repository(sys.executable, tmp_path)


@pytest.mark.slow
def test_plain_pip_install_in_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "torch==2.13.0", str(ROOT)],
        check=True,
        timeout=1200,
        env=_outside_env(),
    )
    _check_user_repository(python, tmp_path)
