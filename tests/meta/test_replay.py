"""verify.replay and the replay/repro artefacts of a failure: each reproduces what it claims."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from tests.helpers import run_cli
from tests.meta.helpers import TINY_CASE
from verify.replay import main, replay

GOOD_CASE = TINY_CASE.replace(seed=5)


def _replay(spec, name, prop, case):
    return main(["--variant", spec, "--name", name, "--property", prop, "--case", case.to_json()])


def test_passing_case_prints_pass(variant_file, capsys):
    standard = GOOD_CASE.replace(form="standard")
    assert _replay(f"{variant_file}:GOOD", "meta_good", "forward", standard) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS") and "meta_good" in out and "forward" in out
    assert GOOD_CASE.replace(form="standard").describe() in out


def test_builtin_variant_passes(capsys):
    case = GOOD_CASE.replace(form="standard", bias=True, affine=True, padding=(1, 0))
    assert _replay("fused.registry:BUILTIN_VARIANTS", "eager", "gradients", case) == 0
    assert "PASS" in capsys.readouterr().out


def test_failing_case_prints_report(variant_file, capsys):
    spec = f"{variant_file}:BOTH"
    assert _replay(spec, "meta_no_mean", "forward", GOOD_CASE) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL")
    assert "variant 'meta_no_mean' breaks property 'forward'" in out
    assert "out: worst element" in out
    replay_lines = [line for line in out.splitlines() if line.strip().startswith("replay:")]
    assert len(replay_lines) == 1
    assert shlex.quote(spec) in replay_lines[0] and "--name meta_no_mean" in replay_lines[0]


def test_unknown_name_or_property(variant_file, capsys):
    assert _replay(f"{variant_file}:BOTH", "nobody", "forward", GOOD_CASE) == 2
    assert "no variant named 'nobody'" in capsys.readouterr().err
    assert _replay(f"{variant_file}:BOTH", "meta_good", "no_such_property", GOOD_CASE) == 2
    assert "unknown property 'no_such_property'" in capsys.readouterr().err


# A correct standard-form variant's case as a user types it: no "form", defaults left out.
FORMLESS = {
    "batch": 2,
    "in_channels": 1,
    "out_channels": 1,
    "height": 1,
    "width": 1,
    "kernel": [1, 1],
    "dtype": "float32",
}


def _replay_json(variant_file, case, name="meta_good", prop="forward", attr="GOOD"):
    text = case if isinstance(case, str) else json.dumps(case)
    argv = ["--variant", f"{variant_file}:{attr}", "--name", name, "--property", prop]
    return main(argv + ["--case", text])


def _usage_error(capsys) -> str:
    """The one line a usage error prints; nothing on stdout, no traceback."""
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("verify.replay: error: "), err
    return err


def test_case_without_form_takes_the_variants(variant_file, capsys):
    assert _replay_json(variant_file, FORMLESS) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS") and "form=standard" in out


def test_case_of_another_form_is_refused(variant_file, capsys):
    assert _replay_json(variant_file, dict(FORMLESS, form="tutorial")) == 2
    err = _usage_error(capsys)
    assert "form 'tutorial'" in err and "implements form 'standard'" in err


def test_replayed_case_object_of_another_form_is_refused(variant_file, capsys):
    """The repro scripts call replay() with a Case: the same checks."""
    spec = f"{variant_file}:GOOD"
    assert replay(spec, "meta_good", "forward", GOOD_CASE.replace(form="tutorial")) == 2
    assert "implements form 'standard'" in _usage_error(capsys)


@pytest.mark.parametrize(
    "change, feature",
    [({"bias": True}, "bias"), ({"dtype": "float16"}, "float16"), ({"groups": 1}, None)],
)
def test_case_with_an_undeclared_feature_is_refused(variant_file, capsys, change, feature):
    status = _replay_json(variant_file, dict(FORMLESS, **change))
    if feature is None:  # a feature's neutral value is no feature
        assert status == 0, capsys.readouterr()
        return
    assert status == 2
    err = _usage_error(capsys)
    assert f"uses feature(s) [{feature!r}]" in err and "does not declare" in err
    assert "FAIL" not in err and "UnsupportedFeatureError" not in err


def test_illegal_case_is_refused(variant_file, capsys):
    assert _replay_json(variant_file, dict(FORMLESS, batch=1)) == 2
    assert "not a legal case: training with 1 value(s) per channel" in _usage_error(capsys)


@pytest.mark.parametrize(
    "case, message",
    [
        ("{", "--case: not valid JSON: "),
        ("[1, 2]", "expected a JSON object of Case fields, got list"),
        (
            {"batch": 2, "kernel": [1, 1]},
            "missing Case field(s) ['in_channels', 'out_channels', 'height', 'width']",
        ),
        (dict(FORMLESS, colour=1), "unknown Case field(s) ['colour']"),
        (dict(FORMLESS, batch="2"), "Case field 'batch' must be an integer, got \"2\""),
        (dict(FORMLESS, kernel=[1, 1, 1]), "'kernel' must be a list of two integers"),
        (dict(FORMLESS, bias=1), "'bias' must be true or false, got 1"),
    ],
)
def test_bad_case_json_is_one_line(variant_file, capsys, case, message):
    assert _replay_json(variant_file, case) == 2
    assert message in _usage_error(capsys)


@pytest.mark.parametrize(
    "spec, name, prop, message",
    [
        ("nope.py:GOOD", "meta_good", "forward", "--variant nope.py:GOOD: no such file"),
        ("{file}:NOTHING", "meta_good", "forward", "has no attribute 'NOTHING'"),
        ("{file}:GOOD", "meta_god", "forward", "no variant named 'meta_god'"),
        ("{file}:GOOD", "meta_good", "froward", "unknown property 'froward'"),
    ],
)
def test_first_mistake_typed_is_reported(variant_file, capsys, spec, name, prop, message):
    """Each mistake with a bad case too: the case is looked at last."""
    argv = ["--variant", spec.format(file=variant_file), "--name", name, "--property", prop]
    assert main(argv + ["--case", "{"]) == 2
    assert message in _usage_error(capsys)


def test_usage_errors_from_the_command_line(variant_file):
    """As a user sees them: one line (run_cli merges stderr into stdout), exit status 2."""
    proc = run_cli(
        [
            "-m",
            "verify.replay",
            "--variant",
            "nope.py:GOOD",
            "--name",
            "meta_good",
            "--property",
            "forward",
            "--case",
            "{",
        ]
    )
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout.strip().splitlines() == [
        "verify.replay: error: --variant nope.py:GOOD: no such file 'nope.py'"
    ]


def test_kernel_traceback_is_shown(tmp_path, capsys):
    """As pytest's report shows it: the kernel's frames down to the line that raised."""
    path = tmp_path / "raising.py"
    path.write_text(RAISING_FILE)
    assert _replay_json(path, FORMLESS, name="raising", attr="RAISING") == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL\nvariant 'raising' breaks property 'forward'")
    assert "raised RuntimeError in forward on a legal case: tile 3 out of range" in out
    assert "the kernel's error (innermost frames):" in out
    assert f'File "{path.resolve()}", line 9, in _tile' in out
    assert "RuntimeError: tile 3 out of range" in out


RAISING_FILE = """\
from fused import Variant


def fn(x, weight, *args, **kwargs):
    return _tile(3)


def _tile(index):
    raise RuntimeError(f"tile {index} out of range")


RAISING = Variant("raising", fn, form="standard")
"""


def _report_lines(failing_run):
    proc, _ = failing_run
    return [
        line[1:].strip() if line.startswith("E ") else line.strip()
        for line in proc.stdout.splitlines()
    ]


def test_failing_run_exits_1_with_a_replay_line(failing_run):
    proc, _ = failing_run
    assert proc.returncode == 1, proc.stdout
    lines = _report_lines(failing_run)
    assert any(line.endswith("variant 'meta_no_mean' breaks property 'forward'") for line in lines)
    assert any(
        line.startswith(f"replay: {shlex.quote(sys.executable)} -m verify.replay ")
        for line in lines
    )


def test_printed_replay_line_reproduces_the_failure(failing_run):
    lines = _report_lines(failing_run)
    # pytest may show the report more than once (traceback, short summary): one distinct line.
    [command] = {line[len("replay: ") :] for line in lines if line.startswith("replay: ")}
    [case_line] = {line for line in lines if line.startswith("case: ")}
    argv = shlex.split(command)
    assert argv[:3] == [sys.executable, "-m", "verify.replay"]  # the interpreter that ran it
    proc = run_cli(argv[1:])
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout.startswith("FAIL")
    assert case_line in proc.stdout  # the same (minimal) case
    assert "breaks property 'forward'" in proc.stdout


def test_repro_script_reproduces_the_failure(failing_run, tmp_path):
    proc, out = failing_run
    lines = _report_lines(failing_run)
    [script] = {
        line[len("repro script: ") :] for line in lines if line.startswith("repro script: ")
    }
    assert script.startswith(str(out / "repro")) and script.endswith(".py")
    # Standalone: runs from anywhere with only the checkout importable.
    result = run_cli([script], cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "FAIL" in result.stdout and "breaks property 'forward'" in result.stdout


def test_no_repro_scripts_for_a_passing_run(passing_run):
    proc, out = passing_run
    assert proc.returncode == 0, proc.stdout
    assert not (out / "repro").exists() or not list((out / "repro").iterdir())


def test_replay_of_a_property_that_does_not_apply(variant_file, capsys):
    """opcheck decides at run time that a variant calls no custom op: a skip, not a crash."""
    assert (
        _replay(f"{variant_file}:GOOD", "meta_good", "opcheck", GOOD_CASE.replace(form="standard"))
        == 0
    )
    assert capsys.readouterr().out.startswith("SKIP: property 'opcheck' applies to")
