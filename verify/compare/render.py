"""The gate's verdicts as text: a comparison of two runs (`render_verdict`) and a history of saved
runs with its steps (`render_history`). Pure string building; the command line prints them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from verify.compare.results import Benchmark, Run
from verify.compare.steps import Step
from verify.compare.time_rule import VariantVerdict
from verify.compare.verdict import FAIL, INCONCLUSIVE, Finding, GateRule, Verdict

__all__ = ["render_verdict", "render_history"]

# ------------------------------------------------------------------------------------------------
# Figures


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if seconds * scale >= 1.0:
            return scale, unit
    return 1e9, "ns"


def _fmt_quartiles(q: tuple[float, float, float], ratio: bool) -> str:
    """(q1, median, q3) as ``median [q1-q3]``: a ratio, or seconds in a readable unit."""
    q1, med, q3 = q
    if ratio:
        return f"{med:.3f} [{q1:.3f}-{q3:.3f}]"
    scale, unit = _time_unit(med)
    return f"{med * scale:.3f} {unit} [{q1 * scale:.3f}-{q3 * scale:.3f}]"


def _fmt_time(bench: Benchmark | float | None) -> str:
    if not isinstance(bench, Benchmark):
        return "-"
    return _fmt_quartiles((bench.q1, bench.median, bench.q3), ratio=False)


def _fmt_bytes(value: Benchmark | float | None) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio == float("inf"):
        return "inf"
    return f"{ratio:.3f}x"


def _table(rows: Sequence[tuple[str, ...]], align: tuple[str, ...]) -> str:
    """Rows as columns (the first row a header, ruled off), aligned left (<) or right (>)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = zip(row, align, widths, strict=True)
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# A comparison of two runs


def _describe(run: Run) -> str:
    parts = [run.path]
    if run.commit_id:
        parts.append(f"commit {run.label}")
    if run.datetime:
        parts.append(run.datetime)
    return ", ".join(parts)


def _describe_rule(rule: GateRule) -> str:
    judged = "each round's time over the eager step paired with it in the same run" + (
        " (absolute time where none was paired)"
        if rule.absolute_time
        else "; unpaired (absolute) times are shown, not judged"
    )
    slower = 1 + rule.time_threshold
    peak = f" (peak figures: by more than {rule.peak_tolerance:.1%})" if rule.peak_tolerance else ""
    return (
        f"Rule: time, on {judged}. A benchmark is SLOWER when HEAD's median is > "
        f"{slower:.2f}x BASE's and a one-sided Mann-Whitney test on the rounds "
        f"gives p < {rule.alpha:g}. A variant regresses when the median of its benchmarks' "
        f"changes is > {slower:.2f}x and most of them are SLOWER; NOISY (inconclusive) "
        f"when the median is that high without that majority; a SLOWER benchmark in a variant "
        f"that did not move is run-to-run drift; variants with fewer than "
        f"{rule.min_benchmarks} benchmarks are not judged on time. Memory regresses when any "
        f"*bytes figure grows{peak}."
    )


def _common_dir(names: Sequence[str]) -> str:
    """The directory prefix (ending in "/") shared by every name, to shorten the table."""
    dirs = {n.rsplit("::", 1)[0].rpartition("/")[0] for n in names}
    if len(dirs) == 1:
        (d,) = dirs
        if d and all(n.startswith(d + "/") for n in names):
            return d + "/"
    return ""


def _findings_table(findings: list[Finding], prefix: str) -> str:
    rows = [("benchmark", "figure", "BASE", "HEAD", "HEAD/BASE", "verdict")]
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


def _variants_table(variants: Iterable[VariantVerdict]) -> str:
    rows = [("variant", "time measure", "benchmarks", "HEAD/BASE (median)", "SLOWER", "verdict")]
    for v in variants:
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


def _variant_time(v: VariantVerdict) -> str:
    return (
        f"  {v.variant}: time {v.measure} {_fmt_ratio(v.estimate)}, SLOWER on "
        f"{v.slower}/{v.benchmarks} benchmark(s)"
    )


def _conclusion(verdict: Verdict) -> list[str]:
    """The lines under the tables: what was left out, what is inconclusive, the outcome."""
    lines = []
    common = verdict.compared
    if verdict.unmatched:
        lines.append(f"{len(verdict.unmatched)} benchmark(s) in only one file (not compared).")
    noisy = verdict.noisy
    if noisy:
        lines.append(
            f"{len(noisy)} variant(s) with a time change as large as a regression but inside the "
            f"noise (NOISY, inconclusive):"
        )
        lines += [_variant_time(v) for v in noisy]
    if verdict.outcome == FAIL:
        slower, grew = verdict.slower, verdict.grew
        lines.append(
            f"FAIL: {len(grew) + len(slower)} regression(s) in {common} common benchmark(s):"
        )
        for v in slower:
            names = verdict.slower_benchmarks(v.variant)
            lines.append(_variant_time(v) + ": " + ", ".join(n.rsplit("::", 1)[-1] for n in names))
        lines += [f"  {f.benchmark}: {f.figure} {_fmt_ratio(f.ratio)}" for f in grew]
    elif verdict.outcome == INCONCLUSIVE:
        lines.append(
            f"INCONCLUSIVE: no regression in {common} common benchmark(s), but {len(noisy)} "
            f"variant(s) changed by more than the threshold without clearing the noise; rerun "
            f"on a quieter machine or with more rounds (--benchmark-min-rounds)."
        )
    else:
        lines.append(f"OK: no regression in {common} common benchmark(s).")
    return lines


def render_verdict(verdict: Verdict) -> str:
    """The comparison as printed by ``python -m verify.compare BASE.json HEAD.json``."""
    base, head = verdict.base, verdict.head
    lines = [f"BASE: {_describe(base)}", f"HEAD: {_describe(head)}", _describe_rule(verdict.rule)]
    if verdict.threads_differ:
        lines.append(
            f"WARNING: BASE ran with {base.threads} torch thread(s), HEAD with {head.threads}: "
            f"time ratios are not comparable across thread counts (--bench-threads)."
        )
    lines.append("")
    prefix = _common_dir([f.benchmark for f in verdict.findings])
    if prefix:
        lines.append(f"(benchmarks under {prefix})")
    lines += [_findings_table(verdict.findings, prefix), ""]
    if verdict.variants:
        lines += ["Time per variant:", _variants_table(verdict.variants.values()), ""]
    return "\n".join(lines + _conclusion(verdict))


# ------------------------------------------------------------------------------------------------
# A history of saved runs


def _fmt_level(value: float, figure: str) -> str:
    if figure.endswith("bytes"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _steps_text(steps: list[Step], n_runs: int, threshold: float) -> str:
    if n_runs < 2:
        return "Steps: need at least two runs."
    if not steps:
        return (
            f"Steps: none (no time level moved by more than {threshold:.0%}, no bytes figure "
            f"changed) across {n_runs} runs."
        )
    lines = [
        f"Steps across {n_runs} runs (time: levels moved > {threshold:.0%}; bytes: any change), "
        f"at the first run of the new level:"
    ]
    ups = [s for s in steps if s.after > s.before]
    for title, group in (("UP (worse)", ups), ("down", [s for s in steps if s.after <= s.before])):
        if not group:
            continue
        lines.append(f"  {title}:")
        for s in sorted(group, key=lambda s: (s.index, s.benchmark, s.figure)):
            lines.append(
                f"    commit {s.commit} (run {s.index}): "
                f"{s.benchmark.rsplit('::', 1)[-1]} {s.figure} "
                f"{_fmt_level(s.before, s.figure)} -> {_fmt_level(s.after, s.figure)} "
                f"({s.ratio:.3f}x)"
            )
    return "\n".join(lines)


def render_history(runs: list[Run], steps: list[Step], threshold: float) -> str:
    """The saved runs, oldest first, and every step found across them (`verify.compare.steps`),
    as printed by ``python -m verify.compare --history DIR``."""
    lines = [f"{len(runs)} saved run(s), oldest first:"]
    for i, run in enumerate(runs):
        lines.append(
            f"  {i:3d}  {run.label:10s}  {run.datetime or '-':26s}  {len(run.benchmarks):3d} "
            f"benchmark(s)  {run.path}"
        )
    return "\n".join(lines + ["", _steps_text(steps, len(runs), threshold)])
