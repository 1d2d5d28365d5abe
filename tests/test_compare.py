"""`python -m verify.compare`: exit status rules, error handling, and the history plot."""

import copy
import json
import os
import sys

import pytest

from tests.helpers import run_cli
from verify.compare import main


def bench(name, median, spread=0.02, group="mnist_net batch=256", variant=None, **bytes_figures):
    """A pytest-benchmark JSON entry: median `median` s, IQR median*(1 -/+ spread)."""
    q1, q3 = median * (1 - spread), median * (1 + spread)
    extra = {"model": "mnist_net", "variant": variant or name}
    extra.update(bytes_figures)
    return {
        "group": group,
        "name": f"test_mnist_net[{name}]",
        "fullname": f"verify/benchmarks/bench_mnist.py::test_mnist_net[{name}]",
        "params": {"variant": name},
        "param": name,
        "extra_info": extra,
        "options": {
            "disable_gc": False,
            "timer": "perf_counter",
            "min_rounds": 5,
            "max_time": 1.0,
            "min_time": 5e-06,
            "warmup": False,
        },
        "stats": {
            "min": q1 * 0.99,
            "max": q3 * 1.01,
            "mean": median,
            "stddev": median * spread,
            "rounds": 9,
            "median": median,
            "iqr": q3 - q1,
            "q1": q1,
            "q3": q3,
            "iqr_outliers": 0,
            "stddev_outliers": 1,
            "outliers": "1;0",
            "ld15iqr": q1,
            "hd15iqr": q3,
            "ops": 1 / median,
            "total": 9 * median,
            "iterations": 1,
        },
    }


def run_json(
    benchmarks,
    commit="0123456789abcdef0123456789abcdef01234567",
    when="2026-01-01T00:00:00.000000+00:00",
):
    return {
        "machine_info": {
            "node": "box",
            "machine": "x86_64",
            "python_implementation": "CPython",
            "torch": {"version": "2.13.0", "threads": 2, "device": "cpu"},
        },
        "commit_info": {
            "id": commit,
            "time": when,
            "author_time": when,
            "dirty": False,
            "project": "convbn-verify",
            "branch": "main",
        },
        "benchmarks": benchmarks,
        "datetime": when,
        "version": "5.2.0",
    }


BASE = run_json(
    [
        bench(
            "eager",
            0.300,
            saved_bytes=153_987_972,
            saved_activation_bytes=149_189_380,
            peak_bytes=200_022_320,
        ),
        bench(
            "fused_standard",
            0.320,
            saved_bytes=94_087_300,
            saved_activation_bytes=89_288_708,
            peak_bytes=177_881_008,
        ),
    ]
)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def compare(tmp_path, base, head, *options):
    """main() on two synthetic runs. Most of them hold one benchmark per variant, so the time
    rule's minimum of benchmarks per variant is lowered to 1 unless the test sets it."""
    if "--min-benchmarks" not in options:
        options = ("--min-benchmarks", "1") + tuple(options)
    return main([write(tmp_path, "base.json", base), write(tmp_path, "head.json", head), *options])


def modified(run, index, **changes):
    """A copy of `run` with benchmark `index` changed: stats keys or extra_info keys."""
    new = copy.deepcopy(run)
    entry = new["benchmarks"][index]
    for key, value in changes.items():
        if key in entry["stats"]:
            entry["stats"][key] = value
        else:
            entry["extra_info"][key] = value
    return new


# ---------------------------------------------------------------------------------------------
# Exit status


def test_identical_files_pass(tmp_path, capsys):
    assert compare(tmp_path, BASE, BASE) == 0
    out = capsys.readouterr().out
    assert "OK: no regression in 2 common benchmark(s)" in out
    assert "153,987,972" in out and "saved_bytes" in out and "1.000x" in out


@pytest.mark.parametrize("key", ["saved_bytes", "saved_activation_bytes", "peak_bytes"])
def test_any_bytes_figure_growing_by_one_byte_fails(tmp_path, capsys, key):
    head = modified(BASE, 1, **{key: BASE["benchmarks"][1]["extra_info"][key] + 1})
    assert compare(tmp_path, BASE, head) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 regression(s)" in out and f"test_mnist_net[fused_standard]: {key}" in out


def test_new_bytes_key_from_another_plugin_is_checked_too(tmp_path):
    base = modified(BASE, 0, oracle_workspace_bytes=1000)
    head = modified(base, 0, oracle_workspace_bytes=1001)
    assert compare(tmp_path, base, head) == 1


def test_less_memory_passes(tmp_path):
    head = modified(BASE, 1, saved_bytes=1, peak_bytes=1)
    assert compare(tmp_path, BASE, head) == 0


def test_peak_tolerance_applies_to_peak_figures_only(tmp_path):
    peak = BASE["benchmarks"][0]["extra_info"]["peak_bytes"]
    saved = BASE["benchmarks"][0]["extra_info"]["saved_bytes"]
    assert (
        compare(
            tmp_path, BASE, modified(BASE, 0, peak_bytes=peak + 1000), "--peak-tolerance", "0.01"
        )
        == 0
    )
    assert (
        compare(
            tmp_path,
            BASE,
            modified(BASE, 0, peak_bytes=int(peak * 1.02)),
            "--peak-tolerance",
            "0.01",
        )
        == 1
    )
    assert (
        compare(tmp_path, BASE, modified(BASE, 0, saved_bytes=saved + 1), "--peak-tolerance", "0.5")
        == 1
    )


# Time from quartiles only (files without per-round data or paired ratios): judged only with
# --absolute-time, the old IQR rule.


def test_unpaired_time_is_shown_but_not_judged_by_default(tmp_path, capsys):
    head = modified(BASE, 0, median=0.900, q1=0.890, q3=0.910)  # 3x, IQRs far apart
    assert compare(tmp_path, BASE, head) == 0
    out = capsys.readouterr().out
    assert "not judged" in out and "3.000x" in out


def test_large_time_regression_with_separate_spreads_fails(tmp_path, capsys):
    head = modified(BASE, 0, median=0.450, q1=0.440, q3=0.460)  # 1.5x, IQRs far apart
    assert compare(tmp_path, BASE, head, "--absolute-time") == 1
    out = capsys.readouterr().out
    assert "SLOWER" in out and "eager: time absolute (quartiles) 1.500x" in out


def test_time_change_inside_the_noise_is_inconclusive(tmp_path, capsys):
    # +25% median, but HEAD's IQR overlaps BASE's (noisy machine): neither pass nor fail.
    head = modified(BASE, 0, median=0.375, q1=0.250, q3=0.420)
    assert compare(tmp_path, BASE, head, "--absolute-time") == 3
    assert "INCONCLUSIVE" in capsys.readouterr().out


def test_small_time_change_below_threshold_passes_unless_threshold_lowered(tmp_path):
    head = modified(BASE, 0, median=0.327, q1=0.325, q3=0.329)  # +9%, IQRs apart
    assert compare(tmp_path, BASE, head, "--absolute-time") == 0
    assert compare(tmp_path, BASE, head, "--absolute-time", "--time-threshold", "0.10") == 0
    assert compare(tmp_path, BASE, head, "--absolute-time", "--time-threshold", "0.05") == 1


def test_faster_head_passes(tmp_path):
    head = modified(BASE, 0, median=0.100, q1=0.099, q3=0.101)
    assert compare(tmp_path, BASE, head, "--absolute-time") == 0


# ---------------------------------------------------------------------------------------------
# Time from per-round samples: ratios to the paired baseline (the default rule), or absolute
# per-round data with --absolute-time.


def with_rounds(run, index, ratios=None, data=None):
    """A copy of `run` whose benchmark `index` has paired per-round ratios and/or round data."""
    new = copy.deepcopy(run)
    entry = new["benchmarks"][index]
    if ratios is not None:
        entry["extra_info"]["baseline"] = "eager"
        entry["extra_info"]["time_vs_baseline"] = list(ratios)
    if data is not None:
        entry["stats"]["data"] = list(data)
    return new


def spread(level, n=11, width=0.06):
    """n samples evenly spread over level x (1 -/+ width)."""
    return [level * (1 - width + 2 * width * i / (n - 1)) for i in range(n)]


PAIRED = with_rounds(BASE, 1, ratios=spread(1.10))


def test_paired_ratio_slowdown_fails(tmp_path, capsys):
    assert compare(tmp_path, PAIRED, with_rounds(PAIRED, 1, ratios=spread(1.10 * 1.25))) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 regression(s)" in out
    assert (
        "fused_standard: time vs eager 1.250x, SLOWER on 1/1 benchmark(s): "
        "test_mnist_net[fused_standard]"
    ) in out
    assert "SLOWER (p=" in out


def test_paired_ratios_decide_even_when_absolute_time_doubled(tmp_path, capsys):
    # The whole machine was twice as loaded during HEAD: absolute medians doubled, the ratio to
    # the paired eager steps did not move. Not a regression.
    head = modified(PAIRED, 1, median=0.640, q1=0.630, q3=0.650)
    head = modified(head, 0, median=0.600, q1=0.590, q3=0.610)
    assert compare(tmp_path, PAIRED, head) == 0
    assert "OK: no regression in 2 common benchmark(s)" in capsys.readouterr().out


def test_paired_shift_inside_overlapping_rounds_is_noisy(tmp_path, capsys):
    # Median +20% but the rounds spread over +-50%: the rank test cannot tell (exit 3).
    head = with_rounds(PAIRED, 1, ratios=spread(1.10 * 1.20, width=0.5))
    base = with_rounds(PAIRED, 1, ratios=spread(1.10, width=0.5))
    assert compare(tmp_path, base, head) == 3
    out = capsys.readouterr().out
    assert "NOISY" in out and "INCONCLUSIVE" in out


def test_significant_shift_below_the_minimum_effect_passes(tmp_path):
    head = with_rounds(PAIRED, 1, ratios=spread(1.10 * 1.12, width=0.01))
    base = with_rounds(PAIRED, 1, ratios=spread(1.10, width=0.01))
    assert compare(tmp_path, base, head) == 0
    assert compare(tmp_path, base, head, "--time-threshold", "0.05") == 1


def test_alpha_option_changes_what_counts_as_significant(tmp_path):
    base = with_rounds(PAIRED, 1, ratios=spread(1.10, width=0.15))
    head = with_rounds(PAIRED, 1, ratios=spread(1.10 * 1.2, width=0.15))
    assert compare(tmp_path, base, head) == 1
    assert compare(tmp_path, base, head, "--alpha", "1e-6") == 3


def test_absolute_round_data_is_judged_only_with_absolute_time(tmp_path):
    base = with_rounds(BASE, 0, data=spread(0.300))
    head = with_rounds(BASE, 0, data=spread(0.300 * 1.3))
    assert compare(tmp_path, base, head) == 0
    assert compare(tmp_path, base, head, "--absolute-time") == 1


def five_batches(levels, width=0.03):
    """A run with eager and fused_standard at five batch sizes; fused_standard's paired ratios at
    each batch centred on `levels[i]`."""
    benches = []
    for i, level in enumerate(levels):
        for variant in ("eager", "fused_standard"):
            entry = bench(variant, 0.3, group=f"mnist_net batch={32 << i}", saved_bytes=1000)
            entry["name"] = f"test_mnist_net[{variant}-b{32 << i}]"
            entry["fullname"] = "verify/benchmarks/bench_mnist.py::" + entry["name"]
            if variant != "eager":
                entry["extra_info"].update(
                    baseline="eager", time_vs_baseline=spread(level, width=width)
                )
            benches.append(entry)
    return run_json(benches)


def test_one_benchmark_moving_alone_is_drift_not_a_regression(tmp_path, capsys):
    # Measured between runs of one commit: one benchmark's ratio moves 25% with tight rounds
    # while the variant's other benchmarks stay put. Reported, but the variant did not move.
    base = five_batches([1.1] * 5)
    head = five_batches([1.1, 1.1, 1.1 * 1.25, 1.1, 1.1])
    assert compare(tmp_path, base, head) == 0
    out = capsys.readouterr().out
    assert "drift (p=" in out and "OK: no regression" in out


def test_most_benchmarks_of_a_variant_slower_fails_the_variant(tmp_path, capsys):
    base = five_batches([1.1] * 5)
    head = five_batches([1.1, 1.1 * 1.3, 1.1 * 1.3, 1.1 * 1.3, 1.1])
    assert compare(tmp_path, base, head) == 1
    out = capsys.readouterr().out
    assert "fused_standard: time vs eager 1.300x, SLOWER on 3/5 benchmark(s)" in out


def test_variant_moved_without_a_significant_majority_is_noisy(tmp_path, capsys):
    base = five_batches([1.1] * 5, width=0.5)
    head = five_batches([1.1 * 1.25] * 5, width=0.5)
    assert compare(tmp_path, base, head) == 3
    out = capsys.readouterr().out
    assert "fused_standard: time vs eager 1.250x, SLOWER on 0/5" in out and "INCONCLUSIVE" in out


def test_a_variant_with_too_few_benchmarks_is_not_judged_on_time(tmp_path, capsys):
    head = with_rounds(PAIRED, 1, ratios=spread(1.10 * 1.5))
    assert compare(tmp_path, PAIRED, head, "--min-benchmarks", "3") == 0
    assert "not judged (1 benchmark(s) of fused_standard, < 3)" in capsys.readouterr().out
    five = five_batches([1.1] * 5)
    assert compare(tmp_path, five, five_batches([1.1 * 1.5] * 5), "--min-benchmarks", "3") == 1


def test_bad_alpha_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        compare(tmp_path, BASE, BASE, "--alpha", "0")
    assert exc.value.code == 2


def test_benchmarks_in_one_file_only_are_listed_and_do_not_fail(tmp_path, capsys):
    head = copy.deepcopy(BASE)
    head["benchmarks"][1] = bench("checkpoint", 9.0, saved_bytes=10**12)
    assert compare(tmp_path, BASE, head) == 0
    out = capsys.readouterr().out
    assert "only in BASE" in out and "only in HEAD" in out
    assert "2 benchmark(s) in only one file" in out


# ---------------------------------------------------------------------------------------------
# Bad files: exit 2, message names the file and the problem


def test_missing_file(tmp_path, capsys):
    good = write(tmp_path, "base.json", BASE)
    missing = str(tmp_path / "nope.json")
    assert main([good, missing]) == 2
    err = capsys.readouterr().err
    assert missing in err and "no such file" in err


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        (json.dumps({"results": []}), "not a pytest-benchmark JSON file"),
        (json.dumps([1, 2]), "not a pytest-benchmark JSON file"),
        (json.dumps({"benchmarks": [{"fullname": "x"}]}), "has no 'stats' object"),
        (
            json.dumps({"benchmarks": [{"fullname": "x", "stats": {"median": 1}}]}),
            "has no numeric stats ['q1', 'q3']",
        ),
        (json.dumps({"benchmarks": ["x"]}), "benchmarks[0] is not an object"),
    ],
)
def test_malformed_head(tmp_path, capsys, content, problem):
    path = write(tmp_path, "head.json", content)
    assert main([write(tmp_path, "base.json", BASE), path]) == 2
    err = capsys.readouterr().err
    assert path in err and problem in err


def test_directory_instead_of_file(tmp_path, capsys):
    assert main([str(tmp_path), write(tmp_path, "head.json", BASE)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path, capsys):
    path = write(tmp_path, "base.json", BASE)
    os.chmod(path, 0)
    try:
        assert main([path, path]) == 2
        assert "cannot be read" in capsys.readouterr().err
    finally:
        os.chmod(path, 0o644)


def test_wrong_number_of_files_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([write(tmp_path, "base.json", BASE)])
    assert exc.value.code == 2


def test_command_line_entry_point(tmp_path):
    base = write(tmp_path, "base.json", BASE)
    head = write(tmp_path, "head.json", modified(BASE, 0, saved_bytes=10**9))
    same = run_cli(["-m", "verify.compare", base, base])
    grew = run_cli(["-m", "verify.compare", base, head])
    assert (same.returncode, grew.returncode) == (0, 1), same.stdout + grew.stdout


# ---------------------------------------------------------------------------------------------
# History


def storage(tmp_path, runs=4):
    machine = tmp_path / "storage" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    for i in range(runs):
        data = copy.deepcopy(BASE)
        data["commit_info"]["id"] = f"{i:x}" * 40
        data["datetime"] = f"2026-01-0{i + 1}T12:00:00.000000+00:00"
        for entry in data["benchmarks"]:
            entry["stats"]["median"] *= 1 + 0.05 * i
            entry["extra_info"]["saved_bytes"] += 1000 * i
        data["benchmarks"].append(
            bench(
                "checkpoint",
                0.5,
                group="resnet_stage batch=32",
                saved_bytes=26_906_624,
                peak_bytes=45_598_528,
            )
        )
        # written out of order: the history is ordered by datetime, not by file listing
        (machine / f"{4 - i:04d}_run{i}.json").write_text(json.dumps(data))
    return tmp_path / "storage"


def test_history_plot_writes_a_png(tmp_path, capsys):
    out = tmp_path / "history.png"
    assert main(["--history", str(storage(tmp_path)), "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    text = capsys.readouterr().out
    assert "4 saved run(s), oldest first" in text
    commits = [line.split()[1] for line in text.splitlines()[1:5]]
    assert commits == ["00000000", "11111111", "22222222", "33333333"]


def test_history_errors(tmp_path, capsys):
    assert main(["--history", str(tmp_path / "absent")]) == 2
    assert "no such benchmark storage directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--history", str(tmp_path / "empty")]) == 2
    assert "holds no saved runs" in capsys.readouterr().err
    bad = storage(tmp_path)
    (bad / "Linux-CPython-3.11-64bit" / "0009_bad.json").write_text("{")
    assert main(["--history", str(bad)]) == 2
    assert "0009_bad.json: is not valid JSON" in capsys.readouterr().err


def test_plot_without_history_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--plot", str(tmp_path / "x.png")])
    assert exc.value.code == 2


def test_plot_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    out = tmp_path / "history.png"
    assert main(["--history", str(storage(tmp_path)), "--plot", str(out)]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err and not out.exists()
