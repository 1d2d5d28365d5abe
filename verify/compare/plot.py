"""Plot benchmark history: time and memory of every benchmark across saved runs.

One row per benchmark group (model and batch size), titled with the group; in each row only the
panels that have data: the time ratio to the paired baseline (median of the per-round ratios,
interquartile band), the absolute time (median, interquartile band), then the memory figures
(``saved_bytes``, ``peak_bytes``, other ``*bytes`` keys except ``saved_activation_bytes``, which
differs from ``saved_bytes`` only by the constant parameter size). Lines are labelled by variant
name (``extra_info["variant"]``, else the test's parameter), coloured the same way everywhere.

Overlapping lines: memory series that are identical across all runs (every fused kernel saves
the same buffers) are drawn once and labelled ``a = b = c (identical)``, those within 0.5% of
each other at every run ``a ~ b (within 0.5%)``; every line has its own marker and a small
horizontal offset, and earlier lines are drawn wider under later ones, so lines that coincide
for some runs only stay visible. Legends sit under their panel. The x axis is
the run, oldest first, labelled by commit id (``*``: uncommitted changes) and date.
"""

from __future__ import annotations

import math
import re
import statistics
import textwrap
from collections import OrderedDict

__all__ = ["plot_history", "series_label"]

_PREFERRED = ("saved_bytes", "peak_bytes")
_HIDDEN = ("saved_activation_bytes",)
_MIB = 1024.0 * 1024.0
_MARKERS = "osD^vP*Xh<>"
# Series closer than this everywhere would be drawn on top of each other: merge them.
_NEAR = 0.005
RATIO, ABSOLUTE = "time vs baseline", "time"


def series_label(bench) -> str:
    """The variant name of a benchmark: ``extra_info["variant"]``, else the test's parameter
    (``test_mnist_net[eager-b32]`` -> ``eager-b32``), else the test name without ``test_``."""
    if bench.variant:
        return bench.variant
    match = re.search(r"\[(.*)\]$", bench.name)
    if match:
        return match.group(1)
    return re.sub(r"^test_", "", bench.name)


def _group_key(name: str):
    """Sort groups by name, with numbers compared as numbers (batch=32 before batch=128)."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name or "")]


def _value(bench, column):
    """(median, q1, q3) of `column` for one benchmark of one run, or None."""
    if bench is None:
        return None
    if column == RATIO:
        if not bench.ratios:
            return None
        r = sorted(bench.ratios)
        if len(r) < 2:
            return r[0], r[0], r[0]
        q1, med, q3 = statistics.quantiles(r, n=4, method="inclusive")
        return med, q1, q3
    if column == ABSOLUTE:
        return bench.median * 1e3, bench.q1 * 1e3, bench.q3 * 1e3
    v = bench.bytes.get(column)
    return None if v is None else (v / _MIB, v / _MIB, v / _MIB)


def _collect(runs):
    """group -> label -> fullname, in first-seen order."""
    groups: "OrderedDict[str, OrderedDict[str, str]]" = OrderedDict()
    for run in runs:
        for bench in run.benchmarks.values():
            lines = groups.setdefault(bench.group or "(no group)", OrderedDict())
            label = series_label(bench)
            if label in lines and lines[label] != bench.fullname:
                label = bench.name
            lines.setdefault(label, bench.fullname)
    return groups


def _columns_of(runs, lines) -> list:
    """The columns with at least one value in this group."""
    keys = set()
    has_ratio = False
    for run in runs:
        for fullname in lines.values():
            bench = run.benchmarks.get(fullname)
            if bench is not None:
                keys.update(bench.bytes)
                has_ratio = has_ratio or bool(bench.ratios)
    keys -= set(_HIDDEN)
    memory = [k for k in _PREFERRED if k in keys] + sorted(keys - set(_PREFERRED))
    return ([RATIO] if has_ratio else []) + [ABSOLUTE] + memory


def _close(a, b, rel: float) -> bool:
    """Every finite value of series `a` within `rel` of series `b`'s (NaN where both are NaN)."""
    for u, v in zip(a, b, strict=False):
        x, y = u[0], v[0]
        if math.isnan(x) or math.isnan(y):
            if math.isnan(x) != math.isnan(y):
                return False
        elif abs(x - y) > rel * max(abs(x), abs(y)):
            return False
    return True


def _merge_overlapping(series):
    """[(label, values)] -> [(label text, values)]: series that would hide each other (equal, or
    within _NEAR of each other at every run) are drawn once, labelled ``a = b`` (identical) or
    ``a ~ b`` (within _NEAR)."""
    merged = []  # [first values, [(label, exact)]]
    for label, values in series:
        for entry in merged:
            if _close(entry[0], values, _NEAR):
                entry[1].append((label, entry[0] == values))
                break
        else:
            merged.append([values, [(label, True)]])
    out = []
    for values, members in merged:
        text = members[0][0]
        for label, exact in members[1:]:
            text += (" = " if exact else " ~ ") + label
        if len(members) > 1:
            text += " (identical)" if all(e for _, e in members) else f" (within {_NEAR:.1%})"
        out.append((members[0][0], text, values))
    return out


def _title(column, baseline) -> str:
    if column == RATIO:
        return f"time / {baseline or 'baseline'} (per-round ratio median, IQR)"
    if column == ABSOLUTE:
        return "time, ms (median, IQR)"
    return f"{column}, MiB"


def plot_history(runs, path, title: str | None = None) -> str:
    """Write a PNG of `runs` (a list of `verify.compare.results.Run`, oldest first) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _collect(runs)
    group_names = sorted(groups, key=_group_key)
    layout = {g: _columns_of(runs, groups[g]) for g in group_names}
    labels = list(OrderedDict.fromkeys(lbl for g in group_names for lbl in groups[g]))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colours = {lbl: cmap(i % cmap.N) for i, lbl in enumerate(labels)}
    markers = {lbl: _MARKERS[i % len(_MARKERS)] for i, lbl in enumerate(labels)}

    nrows = max(1, len(group_names))
    ncols = max((len(c) for c in layout.values()), default=1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 5.0 * nrows + 0.8), squeeze=False)
    xs = list(range(len(runs)))
    tick_labels = [
        f"{run.label}\n{(run.datetime or '')[5:16].replace('T', ' ')}".rstrip() for run in runs
    ]
    step = max(1, math.ceil(len(runs) / 10))
    for r, group in enumerate(group_names):
        columns = layout[group]
        baseline = next(
            (
                b.baseline
                for run in runs
                for b in run.benchmarks.values()
                if (b.group or "(no group)") == group and b.baseline
            ),
            None,
        )
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(columns):
                ax.set_visible(False)
                continue
            column = columns[c]
            series = []
            for label, fullname in groups[group].items():
                points = [_value(run.benchmarks.get(fullname), column) for run in runs]
                if any(p is not None for p in points):
                    series.append(
                        (label, tuple(p if p is not None else (math.nan,) * 3 for p in points))
                    )
            # Memory figures of several variants coincide (every fused kernel saves the same
            # buffers): draw them once and say so. Time series are never merged, and are spread
            # sideways a little so that near-equal ones do not hide each other.
            if column in (RATIO, ABSOLUTE):
                merged = [(label, label, values) for label, values in series]
            else:
                merged = _merge_overlapping(series)
            width = 0.2 if len(merged) > 1 and len(runs) > 1 else 0.0
            for k, (first, text, values) in enumerate(merged):
                offset = (k - (len(merged) - 1) / 2) * width / max(1, len(merged) - 1)
                x = [xi + offset for xi in xs]
                colour = colours[first]
                # Earlier series are drawn wider, later ones on top of them thinner: where two
                # lines coincide for some runs only, the one underneath still shows as a rim.
                wide = (
                    0.0
                    if column in (RATIO, ABSOLUTE)
                    else (len(merged) - 1 - k) / max(1, len(merged) - 1)
                )
                ax.plot(
                    x,
                    [v[0] for v in values],
                    marker=markers[first],
                    ms=4 + 3 * wide,
                    lw=1.2 + 2.4 * wide,
                    color=colour,
                    zorder=2 + k,
                    label="\n".join(textwrap.wrap(text, 44)),
                )
                if column in (RATIO, ABSOLUTE):
                    ax.fill_between(
                        x,
                        [v[1] for v in values],
                        [v[2] for v in values],
                        color=colour,
                        alpha=0.15,
                        lw=0,
                    )
            if column == RATIO:
                ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.grid(True, alpha=0.3)
            ax.set_title(_title(column, baseline), fontsize=9)
            if c == 0:
                ax.annotate(
                    "\n".join(textwrap.wrap(group, 60)),
                    (0, 1),
                    xycoords="axes fraction",
                    xytext=(0, 22),
                    textcoords="offset points",
                    fontsize=11,
                    fontweight="bold",
                    va="bottom",
                )
            ax.set_xticks(xs[::step])
            slanted = len(xs[::step]) > 4  # more labels than fit side by side
            labels = [t.replace("\n", " ") if slanted else t for t in tick_labels[::step]]
            ax.set_xticklabels(
                labels,
                fontsize=7,
                rotation=35 if slanted else 0,
                ha="right" if slanted else "center",
            )
            # below the panel (inside it, the legend hides the lines), clear of the tick labels
            ax.legend(
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.62 if slanted else -0.2),
                ncol=2,
                frameon=False,
            )
            if len(runs) == 1:
                ax.set_xlim(-0.5, 0.5)
            ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(
        title or f"Benchmark history: {len(runs)} run(s), oldest first (x: commit, date)",
        fontsize=12,
        fontweight="bold",
        x=0.01,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985), h_pad=3.0)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
