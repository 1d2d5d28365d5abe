"""verify.report: failure messages, replay commands, repro scripts, and the end-of-run table."""

from __future__ import annotations

import json
import math
import shlex
import sys

import pytest

from tests.meta.helpers import TINY_CASE, lower_precision
from verify import report
from verify.case import Case
from verify.properties import forward
from verify.specs import BUILTIN_SPEC

CASE = TINY_CASE.replace(form="standard", seed=11)
# The summary table's header, split into words ("size tier", "worst err/bound").
SUMMARY_HEADER = ["variant", "property", "size", "tier", "examples", "failed", "worst", "err/bound"]


def _case_from_command(command):
    argv = shlex.split(command)
    return Case.from_json(argv[argv.index("--case") + 1]), argv


def test_replay_command_round_trips_the_case(report_session):
    report_session.variant_specs["meta v"] = "some dir/variants.py:ALL"
    case, argv = _case_from_command(report_session.replay_command("meta v", "gradients", CASE))
    assert case == CASE
    assert argv[argv.index("--variant") + 1] == "some dir/variants.py:ALL"
    assert argv[argv.index("--name") + 1] == "meta v"
    assert argv[argv.index("--property") + 1] == "gradients"


def test_replay_command_defaults_to_builtin_spec(report_session):
    _, argv = _case_from_command(report_session.replay_command("eager", "forward", CASE))
    assert argv[argv.index("--variant") + 1] == BUILTIN_SPEC
    _, argv = _case_from_command(report.replay_command("eager", "forward", CASE))
    assert argv[argv.index("--variant") + 1] == BUILTIN_SPEC


def test_failure_message_contents():
    message = report.report_text("meta_v", "forward", CASE, ["out: worst element (0,)"])
    lines = message.splitlines()
    assert lines[0] == "variant 'meta_v' breaks property 'forward'"
    assert f"  case: {CASE.describe()}" in lines
    assert "  out: worst element (0,)" in lines
    assert lines[-1].startswith(f"  replay: {shlex.quote(sys.executable)} -m verify.replay")
    assert "repro script" not in message  # no --verify-repro-dir


def test_replay_command_names_the_running_interpreter(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/opt/my venv/bin/python3")
    argv = shlex.split(report.replay_command("v", "forward", CASE))
    assert argv[:3] == ["/opt/my venv/bin/python3", "-m", "verify.replay"]


def test_failure_message_has_no_side_effect(tmp_path):
    session = report.ReportSession(repro_dir=str(tmp_path / "repro"))
    before = vars(session).copy()
    session.report_text("v", "forward", CASE, ["detail"])
    session.complete(report.PropertyFailure("v", "forward", CASE, ["detail"]))
    assert vars(session) == before and session.write_last_repro() is None
    assert not (tmp_path / "repro").exists()


def test_failure_message_writes_repro_script(tmp_path):
    session = report.ReportSession(repro_dir=str(tmp_path / "repro"))
    message = str(session.complete(report.PropertyFailure("meta/v 1", "forward", CASE, ["detail"])))
    # Written once the test has failed (the last failure is Hypothesis's minimal example).
    session.record("meta/v 1", "forward", math.inf, CASE, failed=True)
    assert not (tmp_path / "repro").exists()
    path = session.write_last_repro()
    assert [path] == list((tmp_path / "repro").iterdir())
    assert f"repro script: {path}" in message
    assert "/" not in path.name[:-3] and " " not in path.name
    source = path.read_text()
    compile(source, str(path), "exec")
    assert CASE.to_json() in source or repr(CASE.to_json()) in source
    assert "'meta/v 1'" in source and "'forward'" in source
    assert source.startswith(f"#!{sys.executable}\n")


def test_property_failure_reports_worst_element():
    kernel = lower_precision(__import__("torch").bfloat16, "standard")
    with pytest.raises(report.PropertyFailure) as info:
        forward.check(kernel, CASE)
    message = str(info.value)
    assert f"variant '{kernel.name}' breaks property 'forward'" in message
    assert CASE.describe() in message
    assert "out: worst element (" in message and "expected" in message
    assert "actual" in message and "> bound" in message and "x the bound" in message
    assert f"replay: {shlex.quote(sys.executable)} -m verify.replay" in message


def test_tally_and_summary(report_session):
    report_session.record("v1", "forward", 0.25, CASE)
    report_session.record("v1", "forward", 0.5, CASE.replace(seed=3))
    report_session.record("v1", "forward", 0.125, CASE)
    report_session.record("v1", "forward", 0.75, CASE, tier="large")
    report_session.record("v2", "gradients", math.inf, CASE, failed=True)
    rows = report_session.summary_rows()
    assert rows == [
        dict(
            variant="v1",
            property="forward",
            tier="small",
            examples=3,
            failures=0,
            worst_ratio=0.5,
            worst_case=CASE.replace(seed=3).to_json(),
        ),
        dict(
            variant="v1",
            property="forward",
            tier="large",
            examples=1,
            failures=0,
            worst_ratio=0.75,
            worst_case=CASE.to_json(),
        ),
        dict(
            variant="v2",
            property="gradients",
            tier="small",
            examples=1,
            failures=1,
            worst_ratio=None,
            worst_case=CASE.to_json(),
        ),
    ]
    lines = report_session.summary_lines()
    assert lines[0].split() == SUMMARY_HEADER
    assert lines[1].split() == ["v1", "forward", "small", "3", "0", "0.5"]
    assert lines[2].split() == ["v1", "forward", "large", "1", "0", "0.75"]
    assert lines[3].split() == ["v2", "gradients", "small", "1", "1", "inf"]


def test_empty_summary(report_session):
    assert report_session.summary_lines() == [] and report_session.summary_rows() == []


def test_write_summary_json(tmp_path, report_session):
    report_session.record("v1", "forward", 0.25, CASE)
    path = tmp_path / "summary.json"
    report_session.write_summary_json(path)
    assert json.loads(path.read_text()) == report_session.summary_rows()


def test_worker_rows_merge_into_the_same_table():
    """What xdist workers hand over (rows recorded since their last hand-over) adds up on the
    controller to the table one process would have made."""
    one, worker_a, worker_b, controller = (report.ReportSession() for _ in range(4))
    events = [
        ("v1", "forward", 0.25, CASE, False),
        ("v1", "forward", 0.5, CASE.replace(seed=3), False),
        ("v2", "gradients", math.inf, CASE, True),
        ("v1", "forward", 0.125, CASE, False),
    ]
    for i, (v, p, ratio, case, failed) in enumerate(events):
        one.record(v, p, ratio, case, failed)
        (worker_a if i % 2 else worker_b).record(v, p, ratio, case, failed)
        if i == 1:
            controller.merge_rows(worker_a.take_unsent_rows())
    controller.merge_rows(worker_a.take_unsent_rows() + worker_b.take_unsent_rows())
    assert worker_a.take_unsent_rows() == []  # handed over once
    assert controller.summary_rows() == one.summary_rows()
    json.dumps(worker_b.summary_rows())  # rows are plain JSON


# -- a real `pytest verify` run --------------------------------------------------------------
def test_summary_table_of_a_passing_run(passing_run):
    proc, _ = passing_run
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if "convbn-verify: examples and worst error" in line)
    assert lines[i + 1].split() == SUMMARY_HEADER
    variant, prop, tier, examples, failed, worst = lines[i + 2].split()
    assert (variant, prop, tier, failed) == ("meta_good", "forward", "small", "0")
    assert int(examples) >= 10 and 0 < float(worst) < 1


def test_summary_json_of_a_passing_run(passing_run):
    _, out = passing_run
    [row] = json.loads((out / "summary.json").read_text())
    assert row["variant"] == "meta_good" and row["property"] == "forward"
    assert row["examples"] >= 10 and row["failures"] == 0
    assert 0 < row["worst_ratio"] < 1
    worst = Case.from_json(row["worst_case"])
    assert worst.form == "standard" and worst.features() == frozenset()


def test_summary_json_of_a_failing_run(failing_run):
    proc, out = failing_run
    assert proc.returncode == 1
    [row] = json.loads((out / "summary.json").read_text())
    assert row["variant"] == "meta_no_mean" and row["failures"] >= 1
    assert row["worst_ratio"] is None or row["worst_ratio"] > 1  # the failure's own ratio
    Case.from_json(row["worst_case"])


def test_failure_report_puts_the_report_first(failing_run):
    """What broke, the case, the worst element and the replay line lead the failure section; the
    Hypothesis blob and the suite's traceback do not bury them."""
    proc, _ = failing_run
    section = proc.stdout.split(" test_forward[meta_no_mean-small] ")[1].splitlines()
    body = [line for line in section[1:] if line.strip() and not line.startswith("[gw")]
    assert body[0] == "variant 'meta_no_mean' breaks property 'forward'", section[:6]
    assert body[1].startswith("  size: ") and body[2].startswith("  case: ")
    assert body[3].startswith("  out: worst element") and body[4].startswith("  replay: ")
    assert "reproduce_failure" not in proc.stdout and "Traceback" not in proc.stdout


def test_a_session_completes_a_failure_with_its_spec_and_repro_path(tmp_path):
    """A property raises without knowing the run; the session that catches the failure puts the
    variant's SPEC in the replay line and names the repro script, and the result pickles whole."""
    import pickle

    session = report.ReportSession(repro_dir=str(tmp_path / "repro"))
    session.variant_specs["v"] = "my dir/kernels.py:V"
    failure = report.PropertyFailure("v", "forward", CASE, ["detail"], ratio=3.0)
    assert f"--variant {BUILTIN_SPEC}" in str(failure)
    message = str(session.complete(failure))
    assert message == session.report_text("v", "forward", CASE, ["detail"])
    assert "--variant 'my dir/kernels.py:V'" in message and "repro script: " in message
    copy = pickle.loads(pickle.dumps(failure))
    assert str(copy) == message and copy.ratio == 3.0 and copy.case == CASE
