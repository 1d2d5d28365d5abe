"""verify.compare.steps (change points across saved runs) and `verify.compare --history`."""

import copy
import json
import random

from tests.test_compare import BASE
from verify.compare import main
from verify.compare.steps import find_steps, segment


def noisy(n, level=1.0, noise=0.05, seed=0):
    rng = random.Random(seed)
    return [level * rng.lognormvariate(0, noise) for _ in range(n)]


def test_pure_noise_has_no_step():
    # 2-8% run-to-run noise (the paired time ratios show about 5% on the shared machine), 5 to 40
    # runs: no step may be reported above a 10% threshold, in any of 100 series.
    found = []
    for seed in range(100):
        rng = random.Random(seed)
        values = noisy(rng.randint(5, 40), noise=rng.choice([0.02, 0.05, 0.08]), seed=seed)
        if find_steps(values, threshold=0.10):
            found.append(seed)
    assert found == []


def test_a_25_percent_step_is_found_at_its_run():
    # 30 runs under 5% noise, the step anywhere from run 3 to run 27: found (one step, at its
    # run or next to it, of about the right size) in at least 95 of 100 series.
    hits = 0
    for seed in range(100):
        rng = random.Random(seed)
        at = rng.randint(3, 27)
        values = noisy(at, 1.0, seed=seed) + noisy(30 - at, 1.25, seed=seed + 1000)
        steps = find_steps(values, threshold=0.10)
        hits += (
            len(steps) == 1
            and abs(steps[0][0] - at) <= 1
            and 1.15 < steps[0][2] / steps[0][1] < 1.35
        )
    assert hits >= 95


def test_a_single_outlier_is_not_a_step():
    values = noisy(20)
    values[10] *= 2.0
    assert find_steps(values, threshold=0.10) == []


def test_a_small_step_below_the_threshold_is_not_reported():
    values = [1.0] * 10 + [1.05] * 10
    assert find_steps(values, threshold=0.10) == []
    assert find_steps(values, threshold=0.02) == [(10, 1.0, 1.05)]


def test_step_up_then_back_down_gives_two_steps():
    values = noisy(10, 1.0) + noisy(10, 1.4, seed=1) + noisy(10, 1.0, seed=2)
    assert [i for i, *_ in find_steps(values)] == [10, 20]


def test_exact_figures_report_every_change():
    assert find_steps([5, 5, 6, 6, 6, 5], exact=True) == [(2, 5, 6), (5, 6, 5)]


def test_segment_of_a_flat_series_is_one_segment():
    assert segment([1.0] * 12) == [0]


def history(tmp_path, medians, saved):
    """A storage directory with one run per value: benchmark 1 (fused_standard) gets the given
    per-round time ratio level and saved_bytes."""
    machine = tmp_path / "storage" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    rng = random.Random(0)
    for i, (level, nbytes) in enumerate(zip(medians, saved, strict=True)):
        data = copy.deepcopy(BASE)
        data["commit_info"]["id"] = f"{i:02d}" + "c0ffee" * 6 + "00"
        data["datetime"] = f"2026-01-{i + 1:02d}T12:00:00.000000+00:00"
        extra = data["benchmarks"][1]["extra_info"]
        extra["baseline"] = "eager"
        extra["time_vs_baseline"] = [level * rng.lognormvariate(0, 0.05) for _ in range(11)]
        extra["saved_bytes"] = nbytes
        (machine / f"{i + 1:04d}_run.json").write_text(json.dumps(data))
    return tmp_path / "storage"


def test_history_prints_the_commit_where_a_figure_stepped_up(tmp_path, capsys):
    levels = [1.10 * random.Random(i).lognormvariate(0, 0.03) for i in range(12)]
    levels[7:] = [v * 1.3 for v in levels[7:]]
    saved = [94_000_000] * 4 + [118_000_000] * 8
    assert main(["--history", str(history(tmp_path, levels, saved))]) == 0
    out = capsys.readouterr().out
    assert "UP (worse)" in out
    lines = [ln for ln in out.splitlines() if "test_mnist_net[fused_standard]" in ln]
    assert any("commit 07c0ffee (run 7)" in ln and " time " in ln for ln in lines), out
    assert any(
        "commit 04c0ffee (run 4)" in ln and "saved_bytes 94,000,000 -> 118,000,000" in ln
        for ln in lines
    ), out
    assert "down" not in out


def test_history_of_a_steady_commit_reports_no_step(tmp_path, capsys):
    assert main(["--history", str(history(tmp_path, [1.1] * 6, [94_000_000] * 6))]) == 0
    assert "Steps: none" in capsys.readouterr().out
