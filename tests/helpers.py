"""Helpers shared by the test folders: the suite's command lines run from the checkout, and a
kernel's errors measured against the suite's own bounds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from verify import error_bounds, oracle, runner
from verify.oracle_comparison import compare

ROOT = Path(__file__).resolve().parents[1]


# -- the suite's command lines, run from the checkout ------------------------------------------
def cli_env(**changes: str | None) -> dict:
    """This environment with CI=1, one intra-op thread, a fixed hash seed and the checkout first
    on PYTHONPATH, then `changes` (None removes a variable)."""
    env = dict(os.environ, CI="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    # The checkout first, whatever state its editable install is in.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(
    args, *, timeout=120, cwd=ROOT, env=None, python=sys.executable
) -> subprocess.CompletedProcess:
    """Run `python ARGS` (in `cli_env()` unless `env` is given); text output, stdout and stderr
    together."""
    return subprocess.run(
        [python, *args],
        cwd=cwd,
        env=cli_env() if env is None else env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )


# -- a kernel against the suite's bounds --------------------------------------------------------
def ratios(kernel, case, *, gradients=True) -> dict:
    """error / bound (`verify.error_bounds.bounds`) for every result of `kernel` on `case`, the
    oracle fed the case's arrays (rounded to the dtypes they are passed in)."""
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=gradients)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=gradients)
    actual, _ = runner.run(kernel, case, arrays, gradients=gradients)
    return {
        name: compare(name, getattr(actual, name), value, getattr(bounds, name)).ratio
        for name, value in exact.items()
    }
