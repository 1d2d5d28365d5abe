"""Proof that the suite catches Triton tiling bugs, through Triton's CPU interpreter.

* `test_replayed_bug_is_caught`: each planted bug of tests/gallery/triton_bugs.py fails its
  property on an explicit case (`CASES`) for the expected reason, and the correct Triton kernel
  passes the same case. Deterministic and fast; covers the bugs that only show on channels longer
  than one program's 1,024 values, which the suite's strategies must reach to find them.
* `test_triton_bug_is_caught_by_the_suite`: `pytest verify` (the `gallery_interpreted` profile:
  the ci profile's examples for an interpreted kernel, no shrinking; forward property) on all bugs
  and the correct kernels at once, like tests/test_gallery.py; the size tiers reach the channels
  longer than one program's 1,024 values where the split and tail bugs live.
"""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip(
    "triton", reason="triton is not installed (pip install 'convbn-verify[triton]')"
)

from tests.gallery import triton_bugs  # noqa: E402
from tests.helpers import cli_env, run_cli  # noqa: E402
from tests.test_gallery import Run, _run_suite  # noqa: E402
from verify.case import Case  # noqa: E402
from verify.properties import PROPERTIES  # noqa: E402
from verify.report import PropertyFailure  # noqa: E402

BUGS_SPEC = "tests/gallery/triton_bugs.py:ALL"
CORRECT_SPEC = "tests/gallery/triton_bugs.py:CORRECT"
BUGS = {v.name: v for v in triton_bugs.ALL}
CORRECT = {v.form: v for v in triton_bugs.CORRECT}
# Values one program reduces before the cross-program merge (TritonBatchNorm's default tiling).
CHUNK = 1024


@pytest.mark.parametrize("name", sorted(BUGS))
def test_replayed_bug_is_caught(name):
    case = Case(**triton_bugs.CASES[name])
    assert case.values_per_channel > CHUNK or not triton_bugs.LARGE[name]
    for prop, reason in triton_bugs.EXPECTED[name].items():
        with pytest.raises(PropertyFailure) as caught:
            PROPERTIES[prop].check(BUGS[name], case)
        assert re.search(reason, str(caught.value)), str(caught.value)
        ratio = PROPERTIES[prop].check(CORRECT[case.form], case)
        assert ratio <= 1.0


def test_replay_command_line_runs_triton_bugs_on_the_interpreter():
    """`python -m verify.replay` sets the interpreter up itself (no pytest plugin involved)."""
    name = "triton_missing_mask"
    done = run_cli(
        [
            "-m",
            "verify.replay",
            "--variant",
            BUGS_SPEC,
            "--name",
            name,
            "--property",
            "forward",
            "--case",
            Case(**triton_bugs.CASES[name]).to_json(),
        ],
        env=cli_env(TRITON_INTERPRET=None),
        timeout=600,
    )
    assert done.returncode == 1, done.stdout
    assert re.search(
        r"breaks property 'forward'\s+size: .*\s+case: .*\s+out: worst element", done.stdout
    )


@pytest.fixture(scope="module")
def triton_gallery(tmp_path_factory) -> Run:
    profile = os.environ.get("CONVBN_GALLERY_PROFILE", "gallery_interpreted")
    tmp = tmp_path_factory.mktemp("triton_gallery")
    return Run(*_run_suite(tmp, [BUGS_SPEC, CORRECT_SPEC], profile, extra=["-k", "test_forward"]))


@pytest.mark.gallery
@pytest.mark.parametrize("name", sorted(BUGS))
def test_triton_bug_is_caught_by_the_suite(triton_gallery, name):
    expected = triton_bugs.EXPECTED[name]
    failed = triton_gallery.failed(name)
    missed = sorted(set(expected) - failed)
    assert not missed, f"{name}: not caught by {missed} (failed: {sorted(failed)})"
    for prop, reason in expected.items():
        report = triton_gallery.report(name, prop)
        assert re.search(reason, report), (
            f"{name}: {prop} report does not match {reason!r}:\n{report[:3000]}"
        )


@pytest.mark.gallery
@pytest.mark.parametrize("name", [v.name for v in triton_bugs.CORRECT])
def test_correct_triton_kernel_passes(triton_gallery, name):
    assert not triton_gallery.failed(name), triton_gallery.report(name, "forward")[:3000]
    assert triton_gallery.examples(name, "forward") > 0
