"""The memory table printed after pytest-benchmark's time tables, one per benchmark group.

pytest-benchmark's tables show time only; the memory figures (``extra_info`` keys ending in
``bytes``) are the point of the fused kernels, so `format_memory_tables` lays them out in the same
groups and row order, with each figure's ratio to the group's baseline variant and the median of
the paired per-round time ratios (``time_vs_baseline``, see `verify.benchmarks.harness`).
"""

from __future__ import annotations

import statistics

from verify.compare.results import bytes_figures

__all__ = ["format_memory_tables"]

# Figures shown first, in this order; other *bytes keys follow alphabetically.
_PREFERRED = ("saved_bytes", "saved_activation_bytes", "peak_bytes")
_MB = 1e6


def _columns(benches) -> list:
    keys = set()
    for b in benches:
        keys.update(bytes_figures(b.get("extra_info")))
    return [k for k in _PREFERRED if k in keys] + sorted(keys - set(_PREFERRED))


def _baseline_of(benches):
    """The row of the group's baseline variant (the one the others were paired with), if any."""
    names = {(b.get("extra_info") or {}).get("baseline") for b in benches} - {None}
    for b in benches:
        info = b.get("extra_info") or {}
        # The eager-mode row: a compile peer of the baseline variant shares its variant name.
        if info.get("variant") in names and "compiled" not in info:
            return b
    return None


def _ratio(value, base) -> str:
    if value is None or not base:
        return ""
    return f"{value / base:.2f}x"


def _time_ratio(bench) -> str:
    ratios = (bench.get("extra_info") or {}).get("time_vs_baseline")
    if not ratios:
        return ""
    if len(ratios) < 4:
        return f"{statistics.median(ratios):.2f}x"
    q1, med, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{med:.2f}x [{q1:.2f}-{q3:.2f}]"


def format_memory_tables(groups) -> list:
    """Lines of one table per group that has bytes figures.

    `groups`: pytest-benchmark's grouping, ``[(group name, [benchmark dict, ...]), ...]`` with each
    dict holding ``name`` and ``extra_info`` (what ``pytest_benchmark_group_stats`` returns).
    """
    lines = []
    for name, benches in groups:
        columns = _columns(benches)
        if not columns:
            continue
        base = _baseline_of(benches)
        base_name = (base.get("extra_info") or {}).get("variant") if base else None
        header = ["Name"]
        for key in columns:
            header.append(f"{key[: -len('_bytes')] if key.endswith('_bytes') else key} (MB)")
            if base is not None:
                header.append(f"vs {base_name}")
        paired = any((b.get("extra_info") or {}).get("time_vs_baseline") for b in benches)
        if paired:
            baselines = {(b.get("extra_info") or {}).get("baseline") for b in benches} - {None}
            name_of = baselines.pop() if len(baselines) == 1 else "baseline"
            header.append(f"time vs {name_of}: rounds' median [IQR]")
        rows = [header]
        for b in benches:
            figures = bytes_figures(b.get("extra_info"))
            row = [str(b.get("name"))]
            for key in columns:
                value = figures.get(key)
                row.append("-" if value is None else f"{value / _MB:,.1f}")
                if base is not None:
                    row.append(_ratio(value, bytes_figures(base.get("extra_info")).get(key)))
            if paired:
                row.append(_time_ratio(b))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        body = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            ).rstrip()
            for r in rows
        ]
        width = max(len(line) for line in body)
        title = f" memory {name!r}: {len(benches)} tests "
        lines.append("")
        lines.append(title.center(width, "-"))
        lines.append(body[0])
        lines.append("-" * width)
        lines.extend(body[1:])
        lines.append("-" * width)
    if lines:
        lines.append(
            "Memory: bytes per forward+backward step (MB = 1e6 bytes). saved: what autograd "
            "keeps for backward (exact); peak: most allocated during the step. Ratios vs the "
            "group's baseline; time ratios pair each round with a baseline step."
        )
    return lines
