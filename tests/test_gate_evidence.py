"""The regression gate on real runs recorded on the shared 2-core machine (tests/data/gate/).

* ``same_commit/``: six ``pytest verify --benchmark-only --benchmark-autosave`` runs of one
  commit, one after the other, while other engineers' test suites loaded the machine. The gate
  must pass every ordered pair of them, and the history mode must find no step in them.
* ``planted/slow.json``: ``--variant tests/bench_plants.py:SLOW`` (``fused_standard`` doing real
  extra work: one more forward pass per call; the gate measured 1.14-1.28x over its benchmarks,
  from 1.05x at batch 32 to 1.3x at batch 256). The gate must fail it against every same-commit
  run, on fused_standard's time and nothing else. ``planted/slow_0.8.json``: the same plant on
  80% of the batch (1.12-1.28x), recorded at the commit of the same-commit runs: failed or
  inconclusive, never passed.
* ``planted/hungry.json``: ``--variant tests/bench_plants.py:HUNGRY`` (``fused_standard`` saving
  one more input-sized buffer per conv-BN pair, about 25% more saved bytes on MNIST). The gate
  must fail it against every same-commit run, on fused_standard's memory.

The files are the autosaved runs trimmed by ``tests/data/gate/trim.py`` to what the gate reads.
"""

import itertools
import json
from pathlib import Path

import pytest

from verify.compare import judge_runs, main
from verify.compare.results import load_run

DATA = Path(__file__).resolve().parent / "data" / "gate"
SAME = sorted((DATA / "same_commit").glob("*.json"))
SLOW, HUNGRY = DATA / "planted" / "slow.json", DATA / "planted" / "hungry.json"
SLOW_08 = DATA / "planted" / "slow_0.8.json"
SLOWS = [SLOW, SLOW_08]


def test_the_recorded_runs_are_real_runs_of_clean_commits():
    same = [json.loads(p.read_text()) for p in SAME]
    runs = same + [json.loads(p.read_text()) for p in SLOWS + [HUNGRY]]
    assert len(SAME) >= 5
    # the SLOW plant at its final size was recorded at a later commit (only tests/ changed)
    assert len({r["commit_info"]["id"] for r in same + [json.loads(SLOW_08.read_text())]}) == 1
    assert not any(r["commit_info"]["dirty"] for r in runs)
    assert all(r["machine_info"]["torch"]["threads"] == 1 for r in runs)
    assert len({r["datetime"] for r in runs}) == len(runs)
    for r in runs:
        for b in r["benchmarks"]:
            assert len(b["stats"]["data"]) == b["stats"]["rounds"] >= 11


@pytest.mark.parametrize("base, head", list(itertools.permutations(SAME, 2)), ids=lambda p: p.stem)
def test_every_pair_of_same_commit_runs_passes(base, head, capsys):
    assert main([str(base), str(head)]) == 0, capsys.readouterr().out


def test_same_commit_history_has_no_step(capsys):
    assert main(["--history", str(DATA / "same_commit")]) == 0
    assert "Steps: none" in capsys.readouterr().out


def _regressions(base, head):
    return [
        (f.benchmark.rsplit("::", 1)[-1], f.figure)
        for f in judge_runs(load_run(base), load_run(head)).findings
        if f.regression
    ]


@pytest.mark.parametrize("base", SAME, ids=lambda p: p.stem)
def test_planted_slowdown_is_caught(base, capsys):
    assert main([str(base), str(SLOW)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "fused_standard: time vs eager" in out
    regressions = _regressions(base, SLOW)
    assert regressions and all(
        "[fused_standard" in name and figure == "time" for name, figure in regressions
    ), regressions


def test_smaller_planted_slowdown_is_caught_or_inconclusive_never_passed(capsys):
    # About 21%: at the edge of what 11 rounds on this machine resolve. Against one of the six
    # runs it is NOISY (the median moved 1.12x, only 2 of 5 benchmarks significant).
    verdicts = [main([str(base), str(SLOW_08)]) for base in SAME]
    capsys.readouterr()
    assert 0 not in verdicts and verdicts.count(1) >= 5, verdicts
    for base in SAME:
        assert all(
            "[fused_standard" in name and figure == "time"
            for name, figure in _regressions(base, SLOW_08)
        )


@pytest.mark.parametrize(
    "slow, low, high", [(SLOW, 1.12, 1.4), (SLOW_08, 1.1, 1.4)], ids=["plant_1.0", "plant_0.8"]
)  # ("slow" as an id would mark it slow)
def test_planted_slowdown_size(slow, low, high):
    # What the plant costs, by the gate's own estimate (median over fused_standard's
    # benchmarks) against each same-commit run.
    for base in SAME:
        variants = judge_runs(load_run(base), load_run(slow)).variants
        assert low < variants["fused_standard"].estimate < high, (base, variants)


@pytest.mark.parametrize("base", SAME, ids=lambda p: p.stem)
def test_planted_memory_growth_is_caught(base, capsys):
    assert main([str(base), str(HUNGRY)]) == 1
    regressions = _regressions(base, HUNGRY)
    grown = {name for name, figure in regressions if figure == "saved_bytes"}
    fused = {
        name
        for name in (b.rsplit("::", 1)[-1] for b in load_run(HUNGRY).benchmarks)
        if "[fused_standard" in name
    }
    assert grown == fused
    assert all("[fused_standard" in name for name, _ in regressions), regressions


def test_planted_memory_growth_is_about_25_percent_on_mnist_256():
    findings = judge_runs(load_run(SAME[0]), load_run(HUNGRY)).findings
    (growth,) = [
        f.ratio
        for f in findings
        if f.figure == "saved_activation_bytes" and f.benchmark.endswith("[fused_standard-b256]")
    ]
    assert growth == pytest.approx(1.25, abs=0.01)


def test_history_finds_the_commit_where_memory_stepped_up(tmp_path, capsys):
    # The same-commit runs, then the hungry plant as if it were the next commit. (A time step
    # needs more than one run at the new level to stand out of the noise: tests/test_steps.py.)
    storage = tmp_path / "storage"
    storage.mkdir()
    for i, path in enumerate(SAME + [HUNGRY]):
        data = json.loads(path.read_text())
        if path == HUNGRY:  # recorded in between: the history orders runs by date
            data["commit_info"]["id"] = "4a1b" + "0" * 36
            data["datetime"] = "2026-12-01T00:00:00+00:00"
        (storage / f"{i + 1:04d}_run.json").write_text(json.dumps(data))
    assert main(["--history", str(storage)]) == 0
    out = capsys.readouterr().out
    stepped = [line for line in out.splitlines() if "commit 4a1b0000" in line]
    assert any("[fused_standard-b256] saved_bytes" in line for line in stepped), out
    assert all("[fused_standard" in line for line in stepped), stepped
    assert "down" not in out


def test_history_finds_the_commit_where_time_stepped_up(tmp_path, capsys):
    # The six same-commit runs, then the two slow plants as if they were the next two commits:
    # fused_standard's time index steps up at the first of them; nothing else moves.
    storage = tmp_path / "storage"
    storage.mkdir()
    for i, path in enumerate(SAME + [SLOW_08, SLOW]):
        data = json.loads(path.read_text())
        if path in (SLOW_08, SLOW):  # recorded in between: the history orders runs by date
            data["commit_info"]["id"] = f"5104{i}" + "0" * 35
            data["datetime"] = f"2026-12-0{i}T00:00:00+00:00"
        (storage / f"{i + 1:04d}_run.json").write_text(json.dumps(data))
    assert main(["--history", str(storage)]) == 0
    out = capsys.readouterr().out
    up = [line for line in out.splitlines() if line.startswith("    commit")]
    assert any("commit 51046000 (run 6): variant fused_standard" in line for line in up), out
    assert all("commit 51046000 (run 6)" in line and "fused_standard" in line for line in up), out
