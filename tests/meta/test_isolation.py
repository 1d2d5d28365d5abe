"""Crash and hang isolation: a kernel that aborts, segfaults or hangs on some case fails the
property with that case and a replay line, and the rest of the run goes on."""

from __future__ import annotations

import json
import shlex
import sys
import types

import pytest

from tests.helpers import run_cli
from verify import isolation

CRASHING_KERNELS = """\
import ctypes
import os

import torch.nn.functional as F

from fused import Variant


def good(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
         running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
         momentum=0.1, eps=1e-3):
    return F.batch_norm(F.conv2d(x, weight), None, None, training=True, eps=eps)


def aborts(x, weight, *args, **kwargs):
    if x.shape[0] >= 3:
        os.abort()
    return good(x, weight, *args, **kwargs)


def segfaults(x, weight, *args, **kwargs):
    if x.shape[0] >= 3:
        ctypes.string_at(0)
    return good(x, weight, *args, **kwargs)


def hangs(x, weight, *args, **kwargs):
    if x.shape[0] >= 3:
        while True:   # holds the GIL: only a watchdog outside Python can stop it
            pass
    return good(x, weight, *args, **kwargs)


ALL = [Variant("good", good, form="standard"), Variant("aborts", aborts, form="standard"),
       Variant("segfaults", segfaults, form="standard"), Variant("hangs", hangs, form="standard")]
"""
PROPERTIES = ("forward", "gradients")


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash_run")
    (out / "crashing.py").write_text(CRASHING_KERNELS)
    # The small size tier only: one test per variant and property.
    proc = run_cli(
        [
            "-m",
            "pytest",
            "verify/test_forward.py",
            "verify/test_gradients.py",
            "-k",
            "small",
            "-p",
            "no:cacheprovider",
            "-rN",
            "--variant",
            f"{out / 'crashing.py'}:ALL",
            "--verify-timeout",
            "3",
            "--verify-repro-dir",
            str(out / "repro"),
            "--verify-summary-json",
            str(out / "summary.json"),
        ],
        timeout=600,
    )
    return proc, out


def _report(output: str, variant: str, prop: str) -> str:
    """The failure report of one test, from pytest's failure section."""
    marker = f" test_{prop}[{variant}-small] "
    start = next(
        i for i, line in enumerate(output.splitlines()) if marker in line and "___" in line
    )
    lines = output.splitlines()[start + 1 :]
    end = next(
        (i for i, line in enumerate(lines) if line.startswith(("___", "===", "---"))), len(lines)
    )
    return "\n".join(lines[:end])


@pytest.mark.parametrize(
    "variant, headline, stack",
    [
        ("aborts", "crashes on property '{prop}': Fatal Python error: Aborted", "in aborts"),
        (
            "segfaults",
            "crashes on property '{prop}': Fatal Python error: Segmentation fault",
            "in segfaults",
        ),
        ("hangs", "hangs on property '{prop}': no result after 3 s (--verify-timeout)", "in hangs"),
    ],
)
@pytest.mark.parametrize("prop", PROPERTIES)
def test_crash_is_a_failure_report_with_case_and_replay(crash_run, variant, headline, stack, prop):
    proc, out = crash_run
    text = _report(proc.stdout, variant, prop)
    assert f"variant '{variant}' " + headline.format(prop=prop) in text, text
    assert "  case: x(" in text and "the stack when it happened" in text
    assert stack in text  # the kernel's own frame
    [replay] = [
        line.strip()[len("replay: ") :]
        for line in text.splitlines()
        if line.strip().startswith("replay: ")
    ]
    argv = shlex.split(replay)
    assert argv[:3] == [sys.executable, "-m", "verify.replay"]
    assert argv[argv.index("--name") + 1] == variant
    assert argv[argv.index("--property") + 1] == prop
    assert json.loads(argv[argv.index("--case") + 1])["batch"] >= 3  # the case that crashed
    assert list((out / "repro").glob(f"{variant}-{prop}-*.py"))


def test_the_rest_of_the_run_completes(crash_run):
    proc, out = crash_run
    assert proc.returncode == 1, proc.stdout
    rows = {
        (r["variant"], r["property"]): r
        for r in json.loads((out / "summary.json").read_text())
        if r["tier"] == "small"
    }
    variants = ("good", "aborts", "segfaults", "hangs")
    assert set(rows) == {(v, p) for v in variants for p in PROPERTIES}
    for prop in PROPERTIES:
        assert rows[("good", prop)]["failures"] == 0 and rows[("good", prop)]["examples"] >= 25
        for variant in ("aborts", "segfaults", "hangs"):
            assert rows[(variant, prop)]["failures"] == 1
            assert rows[(variant, prop)]["examples"] >= 1
    assert "6 failed, 2 passed" in proc.stdout
    assert "convbn-verify: examples and worst error" in proc.stdout


def test_replay_line_reproduces_the_crash(crash_run):
    proc, _ = crash_run
    text = _report(proc.stdout, "segfaults", "forward")
    [replay] = [
        line.strip()[len("replay: ") :]
        for line in text.splitlines()
        if line.strip().startswith("replay: ")
    ]
    python, *args = shlex.split(replay)
    done = run_cli(args, python=python)
    assert done.returncode == -11, done.stdout  # SIGSEGV, on the very case of the report


# -- pieces ---------------------------------------------------------------------------------------
FAULT = """\
Fatal Python error: Segmentation fault

Thread 0x00007f1 (most recent call first):
  File "/x/execnet/gateway_base.py", line 534 in _perform_spawn

Current thread 0x00007f2 (most recent call first):
  File "/x/kernel.py", line 3 in conv_bn
  File "/x/verify/runner.py", line 64 in call_variant

Extension modules: numpy (total: 1)
"""


def test_excerpt_keeps_the_test_thread():
    excerpt = isolation._excerpt(FAULT)
    assert excerpt.splitlines() == [
        "Fatal Python error: Segmentation fault",
        "Current thread 0x00007f2 (most recent call first):",
        '  File "/x/kernel.py", line 3 in conv_bn',
        '  File "/x/verify/runner.py", line 64 in call_variant',
        "Extension modules: numpy (total: 1)",
    ]
    assert isolation._fatal_error(FAULT) == "Fatal Python error: Segmentation fault"


class _CountingCase:
    def __init__(self):
        self.serialised = 0

    def to_json(self):
        self.serialised += 1
        return "{}"


def test_note_case_outside_a_worker_does_nothing(monkeypatch):
    monkeypatch.setattr(isolation, "_worker", [None])
    case = _CountingCase()
    isolation.note_case("v", "forward", case)
    assert case.serialised == 0  # no worker: not even case.to_json()


def test_note_case_in_a_worker_notes_the_case(monkeypatch):
    noted = []
    worker = types.SimpleNamespace(
        nodeid="verify/test_forward.py::x", note=lambda record, factor: noted.append(record)
    )
    monkeypatch.setattr(isolation, "_worker", [worker])
    isolation.note_case("v", "forward", _CountingCase(), tier="tile")
    assert noted == [
        {
            "nodeid": "verify/test_forward.py::x",
            "variant": "v",
            "property": "forward",
            "tier": "tile",
            "case": "{}",
        }
    ]


def test_a_kernel_on_the_triton_interpreter_gets_a_longer_time_limit(tmp_path):
    """The watchdog's limit (and the limit a hang report names) is --verify-timeout times
    INTERPRETED_TIMEOUT_FACTOR for an interpreted Triton kernel, --verify-timeout otherwise."""
    from verify.case import Case

    worker = isolation._Worker(str(tmp_path), "gw0", timeout=3.0)
    isolation._worker[0] = worker
    try:
        limits = []
        for interpreted in (False, True):
            case = Case(batch=1, in_channels=1, out_channels=1, height=2, width=2, kernel=(1, 1))
            isolation.note_case("v", "forward", case, interpreted=interpreted)
            limits.append(json.loads((tmp_path / "gw0.case").read_text())["limit"])
            worker.idle()
    finally:
        isolation._worker[0] = None
        worker.fault.close()
    assert limits == [3.0, 3.0 * isolation.INTERPRETED_TIMEOUT_FACTOR]
