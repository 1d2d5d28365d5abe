"""The regression gate's time rule: is HEAD slower than BASE, or can this machine not tell?

What is compared. A benchmark whose rounds were paired with a baseline step (``extra_info``
``time_vs_baseline``, written by `verify.benchmarks.harness.run_benchmark`) is judged on those
per-round ratios: on a shared machine the absolute time of one commit moves 2x between runs with
the load, and a baseline step taken just before each round sees the same load. A benchmark with
no paired baseline (the baseline itself) is judged on absolute per-round times only when asked
(``absolute=True``, for a quiet, dedicated machine); otherwise its time is shown, not judged.

The rule, on the two samples (BASE's rounds, HEAD's rounds):

* ``estimate`` = median(HEAD) / median(BASE): the size of the change.
* ``p`` = one-sided Mann-Whitney U p-value that HEAD's rounds are larger: whether the change
  stands out of the round-to-round noise.
* SLOWER (a regression): estimate > 1 + threshold **and** p < alpha.
* NOISY (inconclusive): estimate > 1 + threshold but p >= alpha: as large as a regression, but
  the rounds overlap too much to tell it from noise. Rerun (on a quieter machine, or with more
  rounds) to decide.
* ok: estimate <= 1 + threshold. A significant change smaller than the threshold is not worth
  failing a build for (the minimum effect size).

Files without per-round data (older runs) fall back to their quartiles: the IQRs must be apart
(HEAD q1 > BASE q3) for SLOWER, and a median above the threshold with overlapping IQRs is NOISY.
"""
from __future__ import annotations

from dataclasses import dataclass

from verify.benchmarks.stats import mann_whitney_greater, quartiles

__all__ = ["TimeVerdict", "judge_time", "DEFAULT_TIME_THRESHOLD", "DEFAULT_ALPHA"]

DEFAULT_TIME_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01

OK, SLOWER, NOISY, UNJUDGED = "ok", "SLOWER", "NOISY", "not judged"


@dataclass
class TimeVerdict:
    outcome: str            # OK, SLOWER, NOISY or UNJUDGED
    measure: str            # "vs <baseline>", "absolute" or "absolute (quartiles)"
    base: tuple             # (q1, median, q3) of BASE's figure
    head: tuple
    estimate: float         # median(HEAD) / median(BASE)
    p: float | None = None  # None when judged from quartiles

    @property
    def regression(self) -> bool:
        return self.outcome == SLOWER

    @property
    def inconclusive(self) -> bool:
        return self.outcome == NOISY


def _samples(bench, paired: bool):
    if paired:
        return bench.ratios
    return bench.data


def judge_time(base, head, threshold: float = DEFAULT_TIME_THRESHOLD,
               alpha: float = DEFAULT_ALPHA, absolute: bool = False) -> TimeVerdict:
    """The verdict on one benchmark present in both runs (`verify.benchmarks.results.Benchmark`)."""
    paired = base.baseline is not None and base.baseline == head.baseline
    b, h = _samples(base, paired), _samples(head, paired)
    if b is not None and h is not None:
        bq, hq = quartiles(b), quartiles(h)
        estimate = hq[1] / bq[1] if bq[1] > 0 else float("inf")
        p = mann_whitney_greater(b, h)
        measure = f"vs {base.baseline}" if paired else "absolute"
        if not paired and not absolute:
            return TimeVerdict(UNJUDGED, measure, bq, hq, estimate, p)
        if estimate <= 1 + threshold:
            outcome = OK
        else:
            outcome = SLOWER if p < alpha else NOISY
        return TimeVerdict(outcome, measure, bq, hq, estimate, p)
    bq, hq = (base.q1, base.median, base.q3), (head.q1, head.median, head.q3)
    estimate = head.median / base.median if base.median > 0 else float("inf")
    measure = "absolute (quartiles)"
    if not absolute:
        return TimeVerdict(UNJUDGED, measure, bq, hq, estimate)
    if estimate <= 1 + threshold:
        outcome = OK
    else:
        outcome = SLOWER if head.q1 > base.q3 else NOISY
    return TimeVerdict(outcome, measure, bq, hq, estimate)
