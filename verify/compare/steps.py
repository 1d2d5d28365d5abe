"""Where did a figure step? Change-point detection over a history of saved runs.

Each benchmark's figures are followed across the runs, oldest first:

* time: the median of the per-round ratios to the paired baseline (``time_vs_baseline``), which
  the machine's load moves far less than absolute time. Benchmarks without one (the baseline
  itself) are followed on absolute time only when asked (``absolute=True``): on a shared machine
  their absolute time steps with the load (eager at batch 32 moved 0.71x between two runs of one
  commit), as the regression gate does not judge them either.
* memory: every ``*bytes`` figure. Saved bytes are exact, so every change is a step.
* per variant, a time index: the median over its benchmarks of each one's ratio relative to its
  own median across the runs (`_variant_steps`), far steadier than any one benchmark.

Time is noisy, so one run above the others is not a step. In the spirit of asv's step detection,
the series (in log space, so steps are relative) is fitted by a piecewise-constant function that
minimises the sum of absolute deviations from each segment's median plus a penalty per segment;
the penalty scales with the series' own noise, estimated from the differences of consecutive
runs. A boundary between two segments whose medians differ by more than the threshold is a step,
reported at the first run (commit) of the new segment. The fit is exact (dynamic programming over
all segmentations, O(n^3) for n runs; fine for the hundreds of runs a storage directory holds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from verify.compare.results import Run
from verify.compare.time_rule import DEFAULT_TIME_THRESHOLD

__all__ = ["Step", "segment", "find_steps", "find_history_steps"]

# Noise floor (log units, about 1%): a perfectly flat series must not turn a 1% wobble into a step.
_MIN_NOISE = 0.01
# Penalty per segment, in units of the noise x log(n): on synthetic series (tests/test_steps.py)
# 2.5 finds no step in 300 pure-noise series (2-8% noise) and finds a 25% step under 5% noise
# in 98% of them, at the right run or next to it; 2.0 already finds steps in pure noise.
_PENALTY = 2.5
# A level needs two runs: one run away from its neighbours is an outlier until the next run
# confirms it (between six runs of one commit, a first run 15% below the other five was one).
_MIN_SEGMENT = 2


@dataclass
class Step:
    benchmark: str
    figure: str
    index: int  # first run of the new level
    commit: str  # its label (commit id, '*' when dirty)
    before: float  # median level before and after
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else float("inf")


def _l1_cost(values: Sequence[float]) -> float:
    med = statistics.median(values)
    return sum(abs(v - med) for v in values)


def _noise(values: Sequence[float]) -> float:
    """Robust standard deviation of one value, from consecutive differences (a step moves only
    one of them, so it barely shows)."""
    diffs = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    if not diffs:
        return _MIN_NOISE
    # median |difference| of two normal values is 0.954 sigma
    return max(_MIN_NOISE, statistics.median(diffs) / 0.954)


def segment(values: Sequence[float], penalty: float | None = None) -> list[int]:
    """Start indices of the segments of the best piecewise-constant L1 fit (always starts with 0).

    `penalty` per segment defaults to _PENALTY x the series' noise x log(n) (more runs, more
    chances for noise to look like a step)."""
    n = len(values)
    if n < 2:
        return [0] if n else []
    if penalty is None:
        penalty = _PENALTY * _noise(values) * math.log(n + 1)
    # best[j]: the least cost of values[:j]; start[j]: where its last segment starts
    best = [0.0] + [math.inf] * n
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - _MIN_SEGMENT + 1):  # segments of at least _MIN_SEGMENT runs
            if best[i] == math.inf:
                continue
            cost = best[i] + _l1_cost(values[i:j]) + penalty
            if cost < best[j]:
                best[j], start[j] = cost, i
    bounds, j = [], n
    while j > 0:
        bounds.append(start[j])
        j = start[j]
    return sorted(bounds)


def find_steps(
    values: Sequence[float], threshold: float = DEFAULT_TIME_THRESHOLD, exact: bool = False
) -> list[tuple[int, float, float]]:
    """(index, before, after) of every step of `values` (positive numbers, oldest first).

    exact: every change is a step (exact figures: saved bytes). Otherwise steps come from
    `segment` on log values, kept when the level moved by more than `threshold` (relative)."""
    if exact:
        return [
            (i, values[i - 1], values[i])
            for i in range(1, len(values))
            if values[i] != values[i - 1]
        ]
    logs = [math.log(v) for v in values]
    bounds = segment(logs) + [len(values)]
    levels = [statistics.median(values[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    steps = []
    for k in range(1, len(levels)):
        before, after = levels[k - 1], levels[k]
        if after > before * (1 + threshold) or before > after * (1 + threshold):
            steps.append((bounds[k], before, after))
    return steps


def _series(
    runs: Sequence[Run], fullname: str, figure: str, absolute: bool
) -> list[tuple[int, float]]:
    """(run index, value) of `figure` across runs, where the run has it."""
    points = []
    for i, run in enumerate(runs):
        bench = run.benchmarks.get(fullname)
        if bench is None:
            continue
        value: float | None
        if figure == "time":
            ratios = bench.ratios
            if not ratios and not absolute:
                continue
            value = statistics.median(ratios) if ratios else bench.median
        else:
            value = bench.bytes.get(figure)
        if value is not None and value > 0:
            points.append((i, value))
    return points


def find_history_steps(
    runs: Sequence[Run], threshold: float = DEFAULT_TIME_THRESHOLD, absolute: bool = False
) -> list[Step]:
    """Every `Step` of every benchmark figure across `runs` (`Run`s, oldest first)."""
    names: list[str] = []
    figures: dict[str, list[str]] = {}
    for run in runs:
        for name, bench in run.benchmarks.items():
            if name not in figures:
                names.append(name)
                figures[name] = ["time"]
            figures[name] += [k for k in bench.bytes if k not in figures[name]]
    steps = _variant_steps(runs, threshold)
    for name in names:
        for figure in figures[name]:
            points = _series(runs, name, figure, absolute)
            if len(points) < 2:
                continue
            values = [v for _, v in points]
            for k, before, after in find_steps(values, threshold, exact=figure != "time"):
                index = points[k][0]
                steps.append(Step(name, figure, index, runs[index].label, before, after))
    return steps


def _variant_steps(runs: Sequence[Run], threshold: float) -> list[Step]:
    """Steps of each variant's time index: per run, the median over the variant's benchmarks of
    its paired ratio relative to that benchmark's median over all runs. The same reason as the
    gate's per-variant verdict: one benchmark's ratio drifts from run to run by itself, a slower
    kernel moves all of them (on the recorded runs, fused_standard's index held within 8% over
    six runs of one commit and stepped 1.21x at the planted slowdown, where no single
    benchmark's series showed a step)."""
    series: dict[str, dict[str, dict[int, float]]] = {}  # variant -> fullname -> run -> ratio
    for i, run in enumerate(runs):
        for name, bench in run.benchmarks.items():
            if bench.variant and bench.ratios:
                series.setdefault(bench.variant, {}).setdefault(name, {})[i] = statistics.median(
                    bench.ratios
                )
    steps = []
    for variant, benches in series.items():
        if len(benches) < 2:
            continue  # one benchmark: its own series already says it all
        levels = {name: statistics.median(points.values()) for name, points in benches.items()}
        indices = sorted({i for points in benches.values() for i in points})
        index = [
            statistics.median(
                [points[i] / levels[name] for name, points in benches.items() if i in points]
            )
            for i in indices
        ]
        for k, before, after in find_steps(index, threshold):
            i = indices[k]
            steps.append(
                Step(
                    f"variant {variant} ({len(benches)} benchmarks)",
                    "time index",
                    i,
                    runs[i].label,
                    before,
                    after,
                )
            )
    return steps
