"""The gate's verdict on two runs, as data: every figure of every benchmark, BASE next to HEAD
(`Finding`), the time verdict per variant, and what they add up to (`Verdict.outcome`).

Printing a verdict is `verify.compare.render`'s job, its exit status `verify.compare.cli`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from verify.compare.results import Benchmark, Run
from verify.compare.time_rule import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_BENCHMARKS,
    DEFAULT_TIME_THRESHOLD,
    DRIFT,
    NOISY,
    SLOWER,
    UNJUDGED,
    TimeVerdict,
    VariantVerdict,
    judge_time,
    judge_variants,
)

__all__ = [
    "GateRule",
    "Finding",
    "Verdict",
    "judge_runs",
    "bytes_regressed",
    "PASS",
    "FAIL",
    "INCONCLUSIVE",
]

DEFAULT_PEAK_TOLERANCE = 0.0
PASS, FAIL, INCONCLUSIVE = "OK", "FAIL", "INCONCLUSIVE"


@dataclass(frozen=True)
class GateRule:
    """What counts as a regression: the command line's thresholds."""

    time_threshold: float = DEFAULT_TIME_THRESHOLD
    peak_tolerance: float = DEFAULT_PEAK_TOLERANCE
    alpha: float = DEFAULT_ALPHA
    absolute_time: bool = False
    min_benchmarks: int = DEFAULT_MIN_BENCHMARKS


DEFAULT_RULE = GateRule()


@dataclass
class Finding:
    """One figure of one benchmark, BASE vs HEAD."""

    benchmark: str
    figure: str  # "time" or an extra_info key ending in "bytes"
    base: Benchmark | float | None  # Benchmark (time), number (bytes); None when absent
    head: Benchmark | float | None
    regression: bool = False
    inconclusive: bool = False
    note: str = ""
    verdict: TimeVerdict | None = None  # time findings of benchmarks in both runs

    @property
    def ratio(self) -> float | None:
        if self.verdict is not None:
            return self.verdict.estimate
        base, head = self.base, self.head
        if not isinstance(base, (int, float)) or not isinstance(head, (int, float)):
            return None  # time without a verdict, or a figure of one run only
        if base == 0:
            return 1.0 if head == 0 else float("inf")
        return head / base


def bytes_regressed(
    figure: str, base: float, head: float, peak_tolerance: float = DEFAULT_PEAK_TOLERANCE
) -> bool:
    """Any growth of a bytes figure; peak figures may grow by up to `peak_tolerance` (relative)."""
    if "peak" in figure:
        return head > base * (1.0 + peak_tolerance)
    return head > base


@dataclass(frozen=True)
class Verdict:
    """Two runs compared: the findings (BASE order, then HEAD-only benchmarks) and the time
    verdict of each variant."""

    base: Run
    head: Run
    rule: GateRule
    findings: list[Finding]
    variants: dict[str, VariantVerdict]

    @property
    def compared(self) -> int:
        """How many benchmarks are in both runs."""
        return sum(1 for f in self.findings if f.figure == "time" and f.verdict is not None)

    @property
    def unmatched(self) -> list[Finding]:
        """The time findings of benchmarks in only one run (never a regression)."""
        return [f for f in self.findings if f.figure == "time" and f.verdict is None]

    @property
    def grew(self) -> list[Finding]:
        return [f for f in self.findings if f.regression and f.figure != "time"]

    @property
    def slower(self) -> list[VariantVerdict]:
        return [v for v in self.variants.values() if v.outcome == SLOWER]

    @property
    def noisy(self) -> list[VariantVerdict]:
        return [v for v in self.variants.values() if v.outcome == NOISY]

    def slower_benchmarks(self, variant: str) -> list[str]:
        """The benchmarks of `variant` whose time regressed."""
        return [
            f.benchmark
            for f in self.findings
            if f.figure == "time"
            and f.regression
            and isinstance(f.base, Benchmark)
            and _time_unit_of(f.base) == variant
        ]

    @property
    def threads_differ(self) -> bool:
        """Both runs say how many torch threads they ran with, and not the same."""
        base, head = self.base.threads, self.head.threads
        return bool(base and head and base != head)

    @property
    def outcome(self) -> str:
        """FAIL on any regression; else INCONCLUSIVE when a variant's time was NOISY; else PASS."""
        if self.grew or self.slower:
            return FAIL
        return INCONCLUSIVE if self.noisy else PASS


def _time_unit_of(bench: Benchmark) -> str:
    """What a benchmark's time is judged with: its variant's benchmarks, else itself alone."""
    return bench.variant or bench.fullname


def _time_note(verdict: TimeVerdict, outcome: str) -> str:
    if outcome == UNJUDGED:
        return "not judged (absolute time)"
    if verdict.p is None:
        return outcome
    return f"{outcome} (p={verdict.p:.1g})"


def _bytes_findings(name: str, base: Benchmark, head: Benchmark, rule: GateRule) -> list[Finding]:
    """Every bytes figure of a benchmark in both runs (BASE's keys, then HEAD-only ones)."""
    b_bytes, h_bytes = base.bytes, head.bytes
    findings = []
    for key in list(b_bytes) + [k for k in h_bytes if k not in b_bytes]:
        bv, hv = b_bytes.get(key), h_bytes.get(key)
        if bv is None or hv is None:
            note = "only in BASE" if hv is None else "only in HEAD"
            findings.append(Finding(name, key, bv, hv, note=note))
            continue
        grew = bytes_regressed(key, bv, hv, rule.peak_tolerance)
        findings.append(Finding(name, key, bv, hv, regression=grew, note="GREW" if grew else ""))
    return findings


def _settle_time(
    finding: Finding, own_verdict: TimeVerdict, variant: VariantVerdict | None, rule: GateRule
) -> None:
    """A benchmark's time finding, once its variant is judged (`judge_variants`): its note, and
    whether it counts as a regression or as inconclusive."""
    own = own_verdict.outcome
    overall = variant.outcome if variant is not None else None
    if variant is not None and overall == UNJUDGED:
        finding.note = (
            f"not judged ({variant.benchmarks} benchmark(s) of "
            f"{variant.variant}, < {rule.min_benchmarks})"
        )
    elif own == SLOWER and overall != SLOWER:
        # significant on its own, but its variant did not move: run-to-run drift
        finding.note = _time_note(own_verdict, DRIFT if overall != NOISY else NOISY)
    else:
        finding.note = _time_note(own_verdict, own)
    finding.regression = own == SLOWER and overall == SLOWER
    finding.inconclusive = overall == NOISY and own_verdict.estimate > 1 + rule.time_threshold


def judge_runs(base: Run, head: Run, rule: GateRule = DEFAULT_RULE) -> Verdict:
    """The verdict on HEAD against BASE: memory per figure; time per variant over its benchmarks
    (`verify.compare.time_rule.judge_variants`), each benchmark's time finding saying how it
    contributed."""
    findings = []
    timed: list[tuple[str, Finding, TimeVerdict]] = []
    names = list(base.benchmarks) + [n for n in head.benchmarks if n not in base.benchmarks]
    for name in names:
        b, h = base.benchmarks.get(name), head.benchmarks.get(name)
        if b is None or h is None:
            note = "only in BASE" if h is None else "only in HEAD"
            findings.append(Finding(name, "time", b, h, note=note))
            continue
        verdict = judge_time(b, h, rule.time_threshold, rule.alpha, rule.absolute_time)
        finding = Finding(name, "time", b, h, verdict=verdict)
        findings.append(finding)
        timed.append((_time_unit_of(b), finding, verdict))
        findings += _bytes_findings(name, b, h, rule)
    variants = judge_variants(
        [(unit, verdict) for unit, _, verdict in timed], rule.time_threshold, rule.min_benchmarks
    )
    for unit, finding, verdict in timed:
        _settle_time(finding, verdict, variants.get(unit), rule)
    return Verdict(base, head, rule, findings, variants)
