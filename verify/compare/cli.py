"""The benchmark regression gate: compare two pytest-benchmark runs (time and memory), or find
where figures stepped across saved runs. Not to be confused with `verify.oracle_comparison`, which
compares a kernel's numbers with the oracle's; this module is about benchmarks only, and its
command line is part of the contract (docs/contract.md).

    python -m verify.compare BASE.json HEAD.json [--time-threshold 0.12] [--alpha 0.05]
                             [--min-benchmarks 3] [--peak-tolerance 0] [--absolute-time]
    python -m verify.compare --history DIR [--plot out.png] [--time-threshold 0.12]
                             [--absolute-time]

Comparison: for every benchmark present in both files (matched by full name), prints its time and
every ``extra_info`` figure whose key ends in ``bytes``, BASE next to HEAD, with the ratio
HEAD/BASE and a verdict. Benchmarks in only one file are listed and never fail.

* memory: any ``*bytes`` figure present in both grew at all. Saved-tensor bytes are exact and
  machine independent, so there is no allowance. Peak figures (keys containing ``peak``) are
  deterministic for a fixed torch build, thread count and device, so they are exact by default
  too; ``--peak-tolerance F`` allows a relative growth up to F for them (e.g. cuDNN autotuning).
* time: `verify.compare.time_rule` (the per-round time ratio to the eager baseline measured in
  the same run; a rank test plus a minimum effect size; absolute times only with
  ``--absolute-time``).

Exit status:

* 0: no regression, nothing inconclusive.
* 1: a regression (memory grew, or time SLOWER) on a benchmark present in both.
* 3: no regression, but some time change was as large as a regression and not distinguishable
  from the noise (NOISY): inconclusive, rerun on a quieter machine or with more rounds.
* 2: a file is missing, unreadable, not JSON, or not a pytest-benchmark file (the message names
  the file and the problem), or bad arguments.

History: ``--history DIR`` loads every run saved under a ``--benchmark-storage`` directory
(``DIR/<machine-id>/NNNN_*.json``), oldest first, lists them, and prints every step of a figure
across the runs (`verify.compare.steps`): the commit where it went up, and down. With
``--plot PNG`` it also draws them (`verify.compare.plot`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from verify.compare.results import BenchmarkFileError, Run, load_history, load_run
from verify.compare.time_rule import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_BENCHMARKS,
    DEFAULT_TIME_THRESHOLD,
    DRIFT,
    NOISY,
    SLOWER,
    UNJUDGED,
    TimeVerdict,
    judge_time,
    judge_variants,
)

__all__ = [
    "Finding",
    "GateRule",
    "compare_runs",
    "bytes_regressed",
    "main",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_ERROR",
    "EXIT_INCONCLUSIVE",
]

DEFAULT_PEAK_TOLERANCE = 0.0
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


@dataclass(frozen=True)
class GateRule:
    """What counts as a regression: the command line's thresholds, and the rule's wording."""

    time_threshold: float = DEFAULT_TIME_THRESHOLD
    peak_tolerance: float = DEFAULT_PEAK_TOLERANCE
    alpha: float = DEFAULT_ALPHA
    absolute_time: bool = False
    min_benchmarks: int = DEFAULT_MIN_BENCHMARKS

    def describe(self) -> str:
        judged = "each round's time over the eager step paired with it in the same run" + (
            " (absolute time where none was paired)"
            if self.absolute_time
            else "; unpaired (absolute) times are shown, not judged"
        )
        slower = 1 + self.time_threshold
        return (
            f"Rule: time, on {judged}. A benchmark is SLOWER when HEAD's median is > "
            f"{slower:.2f}x BASE's and a one-sided Mann-Whitney test on the rounds "
            f"gives p < {self.alpha:g}. A variant regresses when the median of its benchmarks' "
            f"changes is > {slower:.2f}x and most of them are SLOWER; NOISY (inconclusive) "
            f"when the median is that high without that majority; a SLOWER benchmark in a variant "
            f"that did not move is run-to-run drift; variants with fewer than "
            f"{self.min_benchmarks} benchmarks are not judged on time. Memory regresses when any "
            f"*bytes figure grows"
            + (
                f" (peak figures: by more than {self.peak_tolerance:.1%})"
                if self.peak_tolerance
                else ""
            )
            + "."
        )


DEFAULT_RULE = GateRule()


@dataclass
class Finding:
    """One figure of one benchmark, BASE vs HEAD."""

    benchmark: str
    figure: str  # "time" or an extra_info key ending in "bytes"
    base: object  # number (bytes), Benchmark (time); None when absent
    head: object
    regression: bool = False
    inconclusive: bool = False
    note: str = ""
    verdict: TimeVerdict | None = None  # time findings of benchmarks in both runs

    @property
    def ratio(self):
        if self.verdict is not None:
            return self.verdict.estimate
        if self.figure == "time" or self.base is None or self.head is None:
            return None
        if self.base == 0:
            return 1.0 if self.head == 0 else float("inf")
        return self.head / self.base


def bytes_regressed(
    figure: str, base: float, head: float, peak_tolerance: float = DEFAULT_PEAK_TOLERANCE
) -> bool:
    """Any growth of a bytes figure; peak figures may grow by up to `peak_tolerance` (relative)."""
    if "peak" in figure:
        return head > base * (1.0 + peak_tolerance)
    return head > base


def _time_note(verdict: TimeVerdict, outcome: str) -> str:
    if outcome == UNJUDGED:
        return "not judged (absolute time)"
    if verdict.p is None:
        return outcome
    return f"{outcome} (p={verdict.p:.1g})"


def _variant_of(bench) -> str:
    variant = bench.extra_info.get("variant")
    return str(variant) if variant else bench.fullname


def compare_runs(base: Run, head: Run, rule: GateRule = DEFAULT_RULE) -> list:
    """Findings for every benchmark of either run (BASE order, then HEAD-only ones)."""
    return compare(base, head, rule)[0]


def compare(base: Run, head: Run, rule: GateRule = DEFAULT_RULE):
    """(findings, {variant: VariantVerdict}): time is judged per variant over its benchmarks
    (`verify.compare.time_rule.judge_variants`), then each benchmark's time finding says how
    it contributed."""
    findings = []
    names = list(base.benchmarks) + [n for n in head.benchmarks if n not in base.benchmarks]
    timed = []
    for name in names:
        b, h = base.benchmarks.get(name), head.benchmarks.get(name)
        if b is None or h is None:
            findings.append(
                Finding(name, "time", b, h, note="only in BASE" if h is None else "only in HEAD")
            )
            continue
        verdict = judge_time(b, h, rule.time_threshold, rule.alpha, rule.absolute_time)
        finding = Finding(name, "time", b, h, verdict=verdict)
        findings.append(finding)
        timed.append((_variant_of(b), finding))
        b_bytes, h_bytes = b.bytes, h.bytes
        for key in list(b_bytes) + [k for k in h_bytes if k not in b_bytes]:
            bv, hv = b_bytes.get(key), h_bytes.get(key)
            if bv is None or hv is None:
                findings.append(
                    Finding(
                        name, key, bv, hv, note="only in BASE" if hv is None else "only in HEAD"
                    )
                )
                continue
            grew = bytes_regressed(key, bv, hv, rule.peak_tolerance)
            findings.append(
                Finding(name, key, bv, hv, regression=grew, note="GREW" if grew else "")
            )
    variants = judge_variants(
        [(v, f.verdict) for v, f in timed], rule.time_threshold, rule.min_benchmarks
    )
    for variant, finding in timed:
        own = finding.verdict.outcome
        overall = variants[variant].outcome if variant in variants else None
        if overall == UNJUDGED:
            finding.note = (
                f"not judged ({variants[variant].benchmarks} benchmark(s) of "
                f"{variant}, < {rule.min_benchmarks})"
            )
        elif own == SLOWER and overall != SLOWER:
            # significant on its own, but its variant did not move: run-to-run drift
            finding.note = _time_note(finding.verdict, DRIFT if overall != NOISY else NOISY)
        else:
            finding.note = _time_note(finding.verdict, own)
        finding.regression = own == SLOWER and overall == SLOWER
        finding.inconclusive = (
            overall == NOISY and finding.verdict.estimate > 1 + rule.time_threshold
        )
    return findings, variants


# ------------------------------------------------------------------------------------------------
# Formatting


def _fmt_time(bench) -> str:
    if bench is None:
        return "-"
    scale, unit = _time_unit(bench.median)
    return f"{bench.median * scale:.3f} {unit} [{bench.q1 * scale:.3f}-{bench.q3 * scale:.3f}]"


def _time_unit(seconds: float):
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if seconds * scale >= 1.0:
            return scale, unit
    return 1e9, "ns"


def _fmt_bytes(value) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _fmt_ratio(ratio) -> str:
    if ratio is None:
        return "-"
    if ratio == float("inf"):
        return "inf"
    return f"{ratio:.3f}x"


def _common_dir(names) -> str:
    """The directory prefix (ending in "/") shared by every name, to shorten the table."""
    dirs = {n.rsplit("::", 1)[0].rpartition("/")[0] for n in names}
    if len(dirs) == 1:
        (d,) = dirs
        if d and all(n.startswith(d + "/") for n in names):
            return d + "/"
    return ""


def _fmt_quartiles(q, ratio: bool) -> str:
    q1, med, q3 = q
    if ratio:
        return f"{med:.3f} [{q1:.3f}-{q3:.3f}]"
    scale, unit = _time_unit(med)
    return f"{med * scale:.3f} {unit} [{q1 * scale:.3f}-{q3 * scale:.3f}]"


def format_findings(findings: list) -> str:
    rows = [("benchmark", "figure", "BASE", "HEAD", "HEAD/BASE", "verdict")]
    prefix = _common_dir([f.benchmark for f in findings]) if findings else ""
    last = None
    for f in findings:
        name = f.benchmark[len(prefix) :] if f.benchmark != last else ""
        last = f.benchmark
        if f.verdict is not None:
            paired = f.verdict.measure.startswith("vs ")
            base = _fmt_quartiles(f.verdict.base, paired)
            head = _fmt_quartiles(f.verdict.head, paired)
            figure = (f"time {f.verdict.measure}" if paired else "time") + " median [q1-q3]"
        elif f.figure == "time":
            base, head = _fmt_time(f.base), _fmt_time(f.head)
            figure = "time median [q1-q3]"
        else:
            base, head = _fmt_bytes(f.base), _fmt_bytes(f.head)
            figure = f.figure
        rows.append((name, figure, base, head, _fmt_ratio(f.ratio), f.note or "ok"))
    return _table(rows, align=("<", "<", ">", ">", ">", "<"))


def _table(rows: list, align: tuple) -> str:
    """Rows as columns (the first row a header, ruled off), aligned left (<) or right (>)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = zip(row, align, widths, strict=True)
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _describe(run: Run) -> str:
    parts = [run.path]
    if run.commit_id:
        parts.append(f"commit {run.label}")
    if run.datetime:
        parts.append(run.datetime)
    return ", ".join(parts)


def format_variants(variants: dict) -> str:
    rows = [("variant", "time measure", "benchmarks", "HEAD/BASE (median)", "SLOWER", "verdict")]
    for v in variants.values():
        rows.append(
            (
                v.variant,
                v.measure,
                str(v.benchmarks),
                _fmt_ratio(v.estimate),
                f"{v.slower}/{v.benchmarks}",
                v.outcome,
            )
        )
    return _table(rows, align=("<", "<", ">", ">", ">", "<"))


def report(base: Run, head: Run, rule: GateRule = DEFAULT_RULE, out=None) -> int:
    """Print the comparison; return the exit status (EXIT_OK, EXIT_REGRESSION or
    EXIT_INCONCLUSIVE)."""
    out = out if out is not None else sys.stdout
    findings, variants = compare(base, head, rule)
    print(f"BASE: {_describe(base)}", file=out)
    print(f"HEAD: {_describe(head)}", file=out)
    print(rule.describe(), file=out)
    if base.threads and head.threads and base.threads != head.threads:
        print(
            f"WARNING: BASE ran with {base.threads} torch thread(s), HEAD with {head.threads}: "
            f"time ratios are not comparable across thread counts (--bench-threads).",
            file=out,
        )
    print(file=out)
    prefix = _common_dir([f.benchmark for f in findings]) if findings else ""
    if prefix:
        print(f"(benchmarks under {prefix})", file=out)
    print(format_findings(findings), file=out)
    print(file=out)
    if variants:
        print("Time per variant:", file=out)
        print(format_variants(variants), file=out)
        print(file=out)
    common = sum(
        1 for f in findings if f.figure == "time" and f.base is not None and f.head is not None
    )
    only = [f for f in findings if f.figure == "time" and (f.base is None or f.head is None)]
    grew = [f for f in findings if f.regression and f.figure != "time"]
    slower = [v for v in variants.values() if v.outcome == SLOWER]
    noisy = [v for v in variants.values() if v.outcome == NOISY]
    if only:
        print(f"{len(only)} benchmark(s) in only one file (not compared).", file=out)
    if noisy:
        print(
            f"{len(noisy)} variant(s) with a time change as large as a regression but inside the "
            f"noise (NOISY, inconclusive):",
            file=out,
        )
        for v in noisy:
            print(
                f"  {v.variant}: time {v.measure} {_fmt_ratio(v.estimate)}, SLOWER on "
                f"{v.slower}/{v.benchmarks} benchmark(s)",
                file=out,
            )
    if grew or slower:
        print(
            f"FAIL: {len(grew) + len(slower)} regression(s) in {common} common benchmark(s):",
            file=out,
        )
        for v in slower:
            names = [
                f.benchmark
                for f in findings
                if f.figure == "time" and f.regression and _variant_of(f.base) == v.variant
            ]
            print(
                f"  {v.variant}: time {v.measure} {_fmt_ratio(v.estimate)}, SLOWER on "
                f"{v.slower}/{v.benchmarks} benchmark(s): "
                + ", ".join(n.rsplit("::", 1)[-1] for n in names),
                file=out,
            )
        for f in grew:
            print(f"  {f.benchmark}: {f.figure} {_fmt_ratio(f.ratio)}", file=out)
        return EXIT_REGRESSION
    if noisy:
        print(
            f"INCONCLUSIVE: no regression in {common} common benchmark(s), but {len(noisy)} "
            f"variant(s) changed by more than the threshold without clearing the noise; rerun "
            f"on a quieter machine or with more rounds (--benchmark-min-rounds).",
            file=out,
        )
        return EXIT_INCONCLUSIVE
    print(f"OK: no regression in {common} common benchmark(s).", file=out)
    return EXIT_OK


def history_report(
    runs: list, threshold: float = DEFAULT_TIME_THRESHOLD, absolute: bool = False, out=None
) -> None:
    from verify.compare.steps import find_history_steps, format_steps

    out = out if out is not None else sys.stdout
    print(f"{len(runs)} saved run(s), oldest first:", file=out)
    for i, run in enumerate(runs):
        print(
            f"  {i:3d}  {run.label:10s}  {run.datetime or '-':26s}  {len(run.benchmarks):3d} "
            f"benchmark(s)  {run.path}",
            file=out,
        )
    print(file=out)
    steps = find_history_steps(runs, threshold, absolute)
    print(format_steps(steps, len(runs), threshold), file=out)


# ------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verify.compare",
        description="Compare two pytest-benchmark JSON files (exit 0 pass, 1 when HEAD's memory "
        "grew or its time grew beyond the noise, 3 when a time change is too noisy to "
        "judge, 2 on bad input), or find steps in a history of saved runs.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="BASE.json HEAD.json",
        help="two --benchmark-json files: the baseline, then the candidate",
    )
    parser.add_argument(
        "--time-threshold",
        type=float,
        default=DEFAULT_TIME_THRESHOLD,
        metavar="F",
        help="smallest relative slow-down of the median that counts (the minimum "
        "effect size; with --history, the smallest time step reported) "
        "(default: %(default)s = 12%%)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        metavar="P",
        help="significance level of the Mann-Whitney test on the rounds: a "
        "slow-down above the threshold with p >= P is NOISY, exit 3 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min-benchmarks",
        type=int,
        default=DEFAULT_MIN_BENCHMARKS,
        metavar="N",
        help="judge a variant's time only when it has N benchmarks in both runs "
        "(default: %(default)s; one benchmark's ratio drifts too much alone)",
    )
    parser.add_argument(
        "--absolute-time",
        action="store_true",
        help="also judge absolute times of benchmarks with no paired baseline (the "
        "baseline itself): only meaningful on a quiet, dedicated machine",
    )
    parser.add_argument(
        "--peak-tolerance",
        type=float,
        default=DEFAULT_PEAK_TOLERANCE,
        metavar="F",
        help="relative growth allowed for *peak*bytes figures "
        "(default: %(default)s; other bytes figures must never grow)",
    )
    parser.add_argument(
        "--history",
        metavar="DIR",
        help="a --benchmark-storage directory: list its saved runs (oldest first)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="with --history: write a plot of time and memory per benchmark across runs",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.time_threshold < 0 or args.peak_tolerance < 0:
        parser.error("--time-threshold and --peak-tolerance must be >= 0")
    if not 0 < args.alpha < 1:
        parser.error("--alpha must be between 0 and 1")
    if args.history:
        if args.files:
            parser.error("--history takes no BASE/HEAD files")
        try:
            runs = load_history(args.history)
        except BenchmarkFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        history_report(runs, args.time_threshold, args.absolute_time)
        if args.plot:
            from verify.compare.plot import plot_history

            plot_history(runs, args.plot)
            print(f"wrote {args.plot}")
        return 0
    if args.plot:
        parser.error("--plot needs --history DIR")
    if len(args.files) != 2:
        parser.error("expected two files, BASE.json and HEAD.json (or --history DIR)")
    try:
        base = load_run(args.files[0])
        head = load_run(args.files[1])
    except BenchmarkFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.min_benchmarks < 1:
        parser.error("--min-benchmarks must be >= 1")
    rule = GateRule(
        time_threshold=args.time_threshold,
        peak_tolerance=args.peak_tolerance,
        alpha=args.alpha,
        absolute_time=args.absolute_time,
        min_benchmarks=args.min_benchmarks,
    )
    return report(base, head, rule)
