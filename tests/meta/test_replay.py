"""verify.replay and the replay/repro artefacts of a failure: each reproduces what it claims."""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.meta.helpers import run_cli
from verify.case import Case
from verify.replay import main

GOOD_CASE = Case(
    batch=2,
    in_channels=2,
    out_channels=3,
    height=4,
    width=4,
    kernel=(2, 2),
    dtype="float32",
    seed=5,
)


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


def test_bad_case_json_is_rejected(variant_file):
    with pytest.raises(ValueError, match="colour"):
        main(
            [
                "--variant",
                f"{variant_file}:GOOD",
                "--name",
                "meta_good",
                "--property",
                "forward",
                "--case",
                '{"colour": 1}',
            ]
        )


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
