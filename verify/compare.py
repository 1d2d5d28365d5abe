"""Compare two pytest-benchmark runs, or plot a history of saved runs.

    python -m verify.compare BASE.json HEAD.json [--time-threshold 0.10] [--peak-tolerance 0]
    python -m verify.compare --history DIR [--plot out.png]

Comparison: for every benchmark present in both files (matched by full name), prints the median
time with its interquartile range [q1, q3] and every ``extra_info`` figure whose key ends in
``bytes``, BASE next to HEAD, with the ratio HEAD/BASE. Benchmarks in only one file are listed and
never fail. Exit status:

* 1 when HEAD regressed on a benchmark present in both:
  - memory: any ``*bytes`` figure present in both grew at all. Saved-tensor bytes are exact and
    machine independent, so there is no allowance. Peak figures (keys containing ``peak``) are
    deterministic for a fixed torch build, thread count and device (the same allocations happen in
    the same order), so they are exact by default too; ``--peak-tolerance F`` allows a relative
    growth up to F for them, for devices whose allocator or kernel choice varies between runs
    (e.g. cuDNN autotuning).
  - time: HEAD's median exceeds BASE's by more than ``--time-threshold`` (default 0.10, i.e. 10%)
    **and** the interquartile ranges do not overlap (HEAD q1 > BASE q3). Both conditions: the
    threshold ignores small shifts, the IQR test ignores large shifts of the median that sit inside
    the run-to-run spread of a noisy machine.
* 2 when a file is missing, unreadable, not JSON, or not a pytest-benchmark file (the message
  names the file and the problem), or on bad arguments.
* 0 otherwise.

History: ``--history DIR`` loads every run saved under a ``--benchmark-storage`` directory
(``DIR/<machine-id>/NNNN_*.json``), ordered oldest first, lists them, and with ``--plot PNG``
draws, for each benchmark group, the median time (with its IQR as a band) and the bytes figures of
every benchmark across runs, labelled by commit id.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from verify.benchmarks.results import BenchmarkFileError, Run, load_history, load_run

__all__ = ["Finding", "compare_runs", "time_regressed", "bytes_regressed", "main"]

DEFAULT_TIME_THRESHOLD = 0.10
DEFAULT_PEAK_TOLERANCE = 0.0


@dataclass
class Finding:
    """One figure of one benchmark, BASE vs HEAD."""

    benchmark: str
    figure: str          # "time" or an extra_info key ending in "bytes"
    base: object         # Benchmark (time) or number (bytes); None when absent
    head: object
    regression: bool = False
    note: str = ""

    @property
    def ratio(self):
        b, h = self._values()
        if b is None or h is None:
            return None
        if b == 0:
            return 1.0 if h == 0 else float("inf")
        return h / b

    def _values(self):
        if self.figure == "time":
            return (self.base.median if self.base is not None else None,
                    self.head.median if self.head is not None else None)
        return self.base, self.head


def time_regressed(base, head, threshold: float = DEFAULT_TIME_THRESHOLD) -> bool:
    """HEAD's median is more than `threshold` above BASE's and the IQRs do not overlap."""
    return head.median > base.median * (1.0 + threshold) and head.q1 > base.q3


def bytes_regressed(figure: str, base: float, head: float,
                    peak_tolerance: float = DEFAULT_PEAK_TOLERANCE) -> bool:
    """Any growth of a bytes figure; peak figures may grow by up to `peak_tolerance` (relative)."""
    if "peak" in figure:
        return head > base * (1.0 + peak_tolerance)
    return head > base


def compare_runs(base: Run, head: Run, time_threshold: float = DEFAULT_TIME_THRESHOLD,
                 peak_tolerance: float = DEFAULT_PEAK_TOLERANCE) -> list:
    """Findings for every benchmark of either run (BASE order, then HEAD-only ones)."""
    findings = []
    names = list(base.benchmarks) + [n for n in head.benchmarks if n not in base.benchmarks]
    for name in names:
        b, h = base.benchmarks.get(name), head.benchmarks.get(name)
        if b is None or h is None:
            findings.append(Finding(name, "time", b, h,
                                    note="only in BASE" if h is None else "only in HEAD"))
            continue
        slower = time_regressed(b, h, time_threshold)
        findings.append(Finding(name, "time", b, h, regression=slower,
                                note="SLOWER" if slower else ""))
        b_bytes, h_bytes = b.bytes, h.bytes
        for key in list(b_bytes) + [k for k in h_bytes if k not in b_bytes]:
            bv, hv = b_bytes.get(key), h_bytes.get(key)
            if bv is None or hv is None:
                findings.append(Finding(name, key, bv, hv,
                                        note="only in BASE" if hv is None else "only in HEAD"))
                continue
            grew = bytes_regressed(key, bv, hv, peak_tolerance)
            findings.append(Finding(name, key, bv, hv, regression=grew,
                                    note="GREW" if grew else ""))
    return findings


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


def format_findings(findings: list) -> str:
    rows = [("benchmark", "figure", "BASE", "HEAD", "HEAD/BASE", "verdict")]
    prefix = _common_dir([f.benchmark for f in findings]) if findings else ""
    last = None
    for f in findings:
        name = f.benchmark[len(prefix):] if f.benchmark != last else ""
        last = f.benchmark
        if f.figure == "time":
            base, head = _fmt_time(f.base), _fmt_time(f.head)
            figure = "time median [q1-q3]"
        else:
            base, head = _fmt_bytes(f.base), _fmt_bytes(f.head)
            figure = f.figure
        rows.append((name, figure, base, head, _fmt_ratio(f.ratio), f.note or "ok"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    align = ["<", "<", ">", ">", ">", "<"]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip())
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


def report(base: Run, head: Run, time_threshold: float, peak_tolerance: float, out=None) -> int:
    out = out if out is not None else sys.stdout
    findings = compare_runs(base, head, time_threshold, peak_tolerance)
    print(f"BASE: {_describe(base)}", file=out)
    print(f"HEAD: {_describe(head)}", file=out)
    print(f"Rule: time regresses when HEAD median > BASE median x {1 + time_threshold:.2f} and "
          f"HEAD q1 > BASE q3 (IQRs apart); memory regresses when any *bytes figure grows"
          + (f" (peak figures: by more than {peak_tolerance:.1%})" if peak_tolerance else "")
          + ".", file=out)
    print(file=out)
    prefix = _common_dir([f.benchmark for f in findings]) if findings else ""
    if prefix:
        print(f"(benchmarks under {prefix})", file=out)
    print(format_findings(findings), file=out)
    print(file=out)
    common = sum(1 for f in findings if f.figure == "time" and f.base is not None and f.head is not None)
    only = [f for f in findings if f.figure == "time" and (f.base is None or f.head is None)]
    bad = [f for f in findings if f.regression]
    if only:
        print(f"{len(only)} benchmark(s) in only one file (not compared).", file=out)
    if bad:
        print(f"FAIL: {len(bad)} regression(s) in {common} common benchmark(s):", file=out)
        for f in bad:
            print(f"  {f.benchmark}: {f.figure} {_fmt_ratio(f.ratio)}", file=out)
        return 1
    print(f"OK: no regression in {common} common benchmark(s).", file=out)
    return 0


def history_report(runs: list, out=None) -> None:
    out = out if out is not None else sys.stdout
    print(f"{len(runs)} saved run(s), oldest first:", file=out)
    for i, run in enumerate(runs):
        print(f"  {i:3d}  {run.label:10s}  {run.datetime or '-':26s}  {len(run.benchmarks):3d} "
              f"benchmark(s)  {run.path}", file=out)


# ------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verify.compare",
        description="Compare two pytest-benchmark JSON files (exit 1 when HEAD's memory grew or "
                    "its time grew beyond the noise), or plot a history of saved runs.")
    parser.add_argument("files", nargs="*", metavar="BASE.json HEAD.json",
                        help="two --benchmark-json files: the baseline, then the candidate")
    parser.add_argument("--time-threshold", type=float, default=DEFAULT_TIME_THRESHOLD, metavar="F",
                        help="relative median slow-down needed to call a regression, together with "
                             "non-overlapping IQRs (default: %(default)s = 10%%)")
    parser.add_argument("--peak-tolerance", type=float, default=DEFAULT_PEAK_TOLERANCE, metavar="F",
                        help="relative growth allowed for *peak*bytes figures (default: %(default)s; "
                             "other bytes figures must never grow)")
    parser.add_argument("--history", metavar="DIR",
                        help="a --benchmark-storage directory: list its saved runs (oldest first)")
    parser.add_argument("--plot", metavar="PNG", help="with --history: write a plot of time and "
                                                      "memory per benchmark across runs")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.time_threshold < 0 or args.peak_tolerance < 0:
        parser.error("--time-threshold and --peak-tolerance must be >= 0")
    if args.history:
        if args.files:
            parser.error("--history takes no BASE/HEAD files")
        try:
            runs = load_history(args.history)
        except BenchmarkFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        history_report(runs)
        if args.plot:
            from verify.benchmarks.plot import plot_history

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
        return 2
    return report(base, head, args.time_threshold, args.peak_tolerance)


if __name__ == "__main__":
    sys.exit(main())
