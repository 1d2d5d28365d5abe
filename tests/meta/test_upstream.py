"""verify.upstream: a finding PyTorch's own F.conv2d + F.batch_norm shares is labelled upstream
(report, end-of-run table, summary JSON) and can be accepted; a kernel wrong another way on the
same case keeps its finding; tutorial-form findings never are upstream; every known bug's repro
still shows the bug."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fused.variant import Variant
from tests.gallery.tutorial_published import PUBLISHED
from tests.helpers import ROOT, cli_env, run_cli
from verify import upstream
from verify.case import Case
from verify.properties import PROPERTIES

# A plain F.conv2d + F.batch_norm kernel fails `gradients` here because of PyTorch's
# cpu-batch-norm-strided-weight bug: a strided bn_weight and a 1x1 output with a dense grad_out.
CASE = Case.from_json(
    '{"batch":2,"in_channels":2,"out_channels":3,"height":1,"width":1,"kernel":[1,1],'
    '"affine":true,"form":"standard","dtype":"float32","layout":"strided",'
    '"grad_layout":"contiguous"}'
)

KERNELS = """\
import torch
import torch.nn.functional as F

from fused import Variant


def plain(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
          running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
          momentum=0.1, eps=1e-3):
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        return 2 * g


def wrong_grad(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
               running_var=None, **kwargs):
    \"\"\"Works around PyTorch's bug, but doubles the input gradient: wrong on the same case,
    in other numbers.\"\"\"
    return plain(_ScaleGrad.apply(x), weight, bias, bn_weight.contiguous(), bn_bias,
                 running_mean, running_var, **kwargs)


SUPPORTS = {"stride", "padding", "dilation", "groups", "bias", "affine", "running_stats"}
PLAIN = Variant("plain", plain, form="standard", supports=SUPPORTS)
WRONG_GRAD = Variant("wrong_grad", wrong_grad, form="standard", supports=SUPPORTS)
"""

# Loaded with -p: the gradients property draws only the case in $FORCED_CASE, so the run
# reaches it every time (the ci profile draws CASE in about 1 of 200 examples). Everything else
# runs as in any run.
FORCE_CASE = """\
import os

from hypothesis import strategies as st

from verify.case import Case
from verify.properties import gradients


def pytest_configure(config):
    case = Case.from_json(os.environ["FORCED_CASE"])
    gradients.strategy = lambda variant, tier="small": st.just(case)
"""
# A zero-variance channel: the published tutorial's NaN gradient.
TUTORIAL_CASE = Case.from_json(
    '{"batch":2,"in_channels":2,"out_channels":3,"height":3,"width":3,"kernel":[1,1],'
    '"form":"tutorial","dtype":"float64","values":"constant"}'
)


def _variant(fn, name):
    return Variant(name, fn, form="standard", supports={"affine"})


def _plain(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
           running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
           momentum=0.1, eps=1e-3):  # fmt: skip
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("nan"))


def _nan_grads_elsewhere(x, weight, bias=None, bn_weight=None, *args, **kwargs):
    """Wrong in the outputs PyTorch gets wrong on CASE (grad_x, grad_weight), but grad_weight
    is NaN in every channel, where PyTorch's is NaN or off in some."""
    return _plain(
        _NaNGrad.apply(x), _NaNGrad.apply(weight), bias, bn_weight.contiguous(), *args, **kwargs
    )


def _worked_around_but_scaled(x, weight, bias=None, bn_weight=None, *args, **kwargs):
    return 1.01 * _plain(x, weight, bias, bn_weight.contiguous(), *args, **kwargs)


# -- the judgement, in-process ----------------------------------------------------------------
def test_a_finding_pytorch_shares_is_upstream_with_the_known_bug():
    verdict = upstream.judge(_variant(_plain, "plain"), PROPERTIES["gradients"], CASE)
    assert verdict is not None and verdict.bug is not None
    assert verdict.bug.id == "cpu-batch-norm-strided-weight"
    assert "bn_weight.contiguous()" in verdict.bug.workaround


def test_the_same_case_without_the_bug_is_not_upstream():
    # PyTorch passes the contiguous layout: a kernel failing it is wrong on its own.
    case = CASE.replace(layout="contiguous")
    assert (
        upstream.judge(_variant(_worked_around_but_scaled, "s"), PROPERTIES["forward"], case)
        is None
    )


@pytest.mark.parametrize(
    "fn",
    [_nan_grads_elsewhere, _worked_around_but_scaled],
    ids=["nan-in-other-places", "right-grads-wrong-output"],
)
def test_a_kernel_wrong_another_way_on_the_same_case_keeps_its_finding(fn):
    variant = _variant(fn, "other")
    with pytest.raises(AssertionError):  # it does fail the property on CASE
        PROPERTIES["gradients"].check(variant, CASE)
    assert upstream.judge(variant, PROPERTIES["gradients"], CASE) is None


def test_tutorial_form_findings_are_never_upstream():
    # The plain-ops composite gives NaN at zero variance in the tutorial form too; that is the
    # published tutorial's bug, never PyTorch's.
    case = CASE.replace(form="tutorial", values="constant", layout="contiguous")
    assert PUBLISHED.form == "tutorial"
    assert upstream.judge(PUBLISHED, PROPERTIES["gradients"], case) is None


# -- pytest --pyargs verify from outside the checkout ------------------------------------------
def _outside_run(tmp: Path, spec: str, case: Case, *options) -> subprocess.CompletedProcess:
    (tmp / "kernels.py").write_text(KERNELS)
    (tmp / "force_case.py").write_text(FORCE_CASE)
    args = ["-m", "pytest", "--pyargs", "verify.test_gradients", "-q", "-p", "no:cacheprovider"]
    args += [
        "-p",
        "force_case",
        "-k",
        "small",
        "--variant",
        spec.format(kernels=tmp / "kernels.py"),
    ]
    args += ["--verify-summary-json", str(tmp / "summary.json"), "-rx", *options]
    env = cli_env(FORCED_CASE=case.to_json())
    # The checkout first (as an install would provide it), then the plugin's dir.
    env["PYTHONPATH"] += os.pathsep + str(tmp)
    return run_cli(args, cwd=tmp, env=env, timeout=180)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    def run(attr, *options, case=CASE, spec="{kernels}:"):
        tmp = tmp_path_factory.mktemp(attr.lower())
        proc = _outside_run(tmp, spec + attr, case, *options)
        return proc, json.loads((tmp / "summary.json").read_text())

    return run


def test_plain_kernel_outside_the_checkout_reports_upstream(outside):
    proc, rows = outside("PLAIN")
    assert proc.returncode == 1, proc.stdout[-4000:]
    out = proc.stdout
    assert "variant 'plain' breaks property 'gradients' [upstream: PyTorch" in out
    assert "known PyTorch bug cpu-batch-norm-strided-weight" in out
    assert "workaround: pass bn_weight.contiguous() to F.batch_norm" in out
    assert "--variant verify.upstream:PYTORCH_CONV_BN --name pytorch_conv_bn" in out
    assert "upstream: cpu-batch-norm-strided-weight" in out  # the end-of-run table
    [row] = rows
    assert row["verdict"] == "upstream" and row["upstream_bug"] == "cpu-batch-norm-strided-weight"
    assert row["pytorch"] == torch.__version__ and row["failures"] >= 1


def test_accepting_upstream_exits_0(outside):
    proc, rows = outside("PLAIN", "--verify-accept-upstream")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "1 xfailed" in proc.stdout and "XFAIL" in proc.stdout
    assert rows[0]["verdict"] == "upstream"


def test_a_kernel_wrong_another_way_fails_even_when_upstream_is_accepted(outside):
    proc, rows = outside("WRONG_GRAD", "--verify-accept-upstream")
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "variant 'wrong_grad' breaks property 'gradients'" in proc.stdout
    assert "upstream" not in proc.stdout.split("short test summary")[0].lower().replace(
        "--verify-accept-upstream", ""
    )
    assert "verdict" not in rows[0]


def test_the_published_tutorials_findings_are_not_upstream(outside):
    spec = f"{ROOT / 'tests' / 'gallery' / 'tutorial_published.py'}:"
    proc, rows = outside("PUBLISHED", "--verify-accept-upstream", case=TUTORIAL_CASE, spec=spec)
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "variant 'tutorial_published' breaks property 'gradients'" in proc.stdout
    assert "grad_x: worst element" in proc.stdout and "actual nan" in proc.stdout
    assert "upstream" not in proc.stdout.replace("--verify-accept-upstream", "")
    assert "verdict" not in rows[0]


# -- the list of known bugs stays honest -------------------------------------------------------
@pytest.mark.parametrize("bug", upstream.KNOWN_BUGS, ids=lambda b: b.id)
def test_every_known_bug_still_reproduces(bug):
    script = ROOT / bug.repro
    assert script.is_file(), f"{bug.id}: no repro script {bug.repro}"
    assert f"## {bug.id}" in (ROOT / "docs" / "upstream-bugs.md").read_text()
    done = run_cli([str(script)])
    assert done.returncode != 0, (
        f"PyTorch {torch.__version__} fixed {bug.id} ({bug.repro} exits 0): move it out of "
        "verify.upstream.KNOWN_BUGS and docs/upstream-bugs.md (say which version fixed it), "
        f"and drop its workaround where the suite no longer needs it.\n{done.stdout}"
    )
    assert done.returncode == 1 and "BUG PRESENT" in done.stdout, (
        f"{bug.repro} is broken (exit {done.returncode}):\n{done.stdout}"
    )


def test_the_upstream_label_travels_from_a_worker_into_the_table_and_json():
    from verify.report import ReportSession

    worker, controller = ReportSession(), ReportSession()
    worker.record("v", "gradients", float("inf"), CASE, failed=True)
    worker.record("v", "forward", 0.5, CASE)
    worker.mark_upstream("v", "gradients", "small", "some-bug")
    controller.merge_rows(worker.take_unsent_rows())
    forward, grads = controller.summary_rows()
    assert "verdict" not in forward
    assert grads["verdict"] == "upstream" and grads["upstream_bug"] == "some-bug"
    header, forward_line, grads_line = controller.summary_lines()
    assert header.split()[-1] == "verdict" and forward_line.split()[-1] == "0.5"
    assert grads_line.endswith("upstream: some-bug")


def test_replay_labels_the_finding_as_pytest_verify_does(tmp_path, capsys):
    from verify.replay import replay

    (tmp_path / "kernels.py").write_text(KERNELS)
    assert replay(f"{tmp_path / 'kernels.py'}:PLAIN", "plain", "gradients", CASE) == 1
    out = capsys.readouterr().out
    assert "[upstream: PyTorch" in out and "workaround: pass bn_weight.contiguous()" in out
    # PyTorch replayed alone fails too, and is not labelled as its own upstream.
    assert replay(upstream.PYTORCH_SPEC, "pytorch_conv_bn", "gradients", CASE) == 1
    out = capsys.readouterr().out
    assert "variant 'pytorch_conv_bn' breaks property 'gradients'\n" in out
    assert "[upstream" not in out and "upstream: PyTorch" not in out
