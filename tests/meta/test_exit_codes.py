"""Exit codes of `pytest verify`: 1 for a found bug however the run is driven (-x, --maxfail,
-n N, crash isolation on or off), 2 only for a real interruption (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, cli_env, run_cli

KERNELS = """\
import os
import time

import torch.nn.functional as F

from fused import Variant


def wrong(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
          running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
          momentum=0.1, eps=1e-3):
    return 1.5 * F.batch_norm(F.conv2d(x, weight), None, None, training=True, eps=eps)


def interrupted(x, weight, *args, **kwargs):
    raise KeyboardInterrupt  # what Ctrl-C does to the process running the kernel


def sleeps(x, weight, *args, **kwargs):
    open(os.environ["KERNEL_STARTED"], "w").close()
    time.sleep(60)


WRONG = Variant("wrong", wrong, form="standard")
INTERRUPTED = Variant("interrupted", interrupted, form="standard")
SLEEPS = Variant("sleeps", sleeps, form="standard")
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    path = tmp_path_factory.mktemp("exit_codes") / "kernels.py"
    path.write_text(KERNELS)
    return path


def _run(kernels, attr, *options):
    # Two tests (forward at two tiers), so that -x has something left to stop.
    args = ["-m", "pytest", "verify/test_forward.py", "-q", "-p", "no:cacheprovider"]
    args += ["-k", "small or tile", "--variant", f"{kernels}:{attr}", *options]
    return run_cli(args)


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("-x",),
        ("--maxfail=1",),
        ("-n", "2", "-x"),
        ("-x", "--verify-isolation", "off"),
        ("-n", "2", "--verify-isolation", "off", "--maxfail=1"),
    ],
    ids=["plain", "x", "maxfail", "n2-x", "isolation-off-x", "n2-isolation-off-maxfail"],
)
def test_a_found_bug_exits_1(kernels, options):
    proc = _run(kernels, "WRONG", *options)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "variant 'wrong' breaks property 'forward'" in proc.stdout
    assert "Interrupted" not in proc.stdout
    if options:  # a stop after the first failure says so, as pytest's own -x does
        assert "stopping after 1 failures" in proc.stdout or "2 failed" in proc.stdout


@pytest.mark.parametrize("options", [(), ("-x",)], ids=["isolated", "x"])
def test_an_interrupted_run_exits_2(kernels, options):
    proc = _run(kernels, "INTERRUPTED", *options)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "KeyboardInterrupt" in proc.stdout or "keyboard-interrupt" in proc.stdout


_SIGINT_AS_IN_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.mark.parametrize(
    "options", [(), ("--verify-isolation", "off")], ids=["isolated", "in-process"]
)
def test_ctrl_c_exits_2(kernels, tmp_path, options):
    started = tmp_path / "started"
    env = dict(cli_env(), KERNEL_STARTED=str(started))
    args = ["-m", "pytest", "verify/test_forward.py", "-q", "-p", "no:cacheprovider", "-k", "small"]
    args += ["--variant", f"{kernels}:SLEEPS", *options]
    # A terminal's Ctrl-C reaches a process that handles SIGINT; one started in the background
    # of a non-interactive shell (a CI runner's `cmd &`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the run under test would sleep through it. The
    # trampoline restores the default before exec (preexec_fn is unsafe with torch's threads).
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGINT_AS_IN_A_TERMINAL, *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert started.exists(), "the kernel never ran"
        # Ctrl-C in a terminal: SIGINT to the foreground process group, xdist's workers included.
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out[-3000:]
