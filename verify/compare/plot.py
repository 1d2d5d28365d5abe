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
import textwrap
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from verify.compare.results import Benchmark, Run
from verify.compare.stats import quartiles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_history", "series_label"]

_PREFERRED = ("saved_bytes", "peak_bytes")
_HIDDEN = ("saved_activation_bytes",)
_MIB = 1024.0 * 1024.0
_MARKERS = "osD^vP*Xh<>"
# Series closer than this everywhere would be drawn on top of each other: merge them.
_NEAR = 0.005
RATIO, ABSOLUTE = "time vs baseline", "time"
_NO_GROUP = "(no group)"

Point = tuple[float, float, float]  # (median, q1, q3) of one figure at one run; NaN where absent
Series = tuple[Point, ...]  # one per run
Colour = tuple[float, float, float, float]


def series_label(bench: Benchmark) -> str:
    """The variant name of a benchmark: ``extra_info["variant"]``, else the test's parameter
    (``test_mnist_net[eager-b32]`` -> ``eager-b32``), else the test name without ``test_``."""
    if bench.variant:
        return bench.variant
    match = re.search(r"\[(.*)\]$", bench.name)
    if match:
        return match.group(1)
    return re.sub(r"^test_", "", bench.name)


def _group_key(name: str) -> list[int | str]:
    """Sort groups by name, with numbers compared as numbers (batch=32 before batch=128)."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name or "")]


# ------------------------------------------------------------------------------------------------
# What to draw: groups, their panels, and each panel's series


def _value(bench: Benchmark | None, column: str) -> Point | None:
    """(median, q1, q3) of `column` for one benchmark of one run, or None."""
    if bench is None:
        return None
    if column == RATIO:
        if not bench.ratios:
            return None
        q1, med, q3 = quartiles(bench.ratios)
        return med, q1, q3
    if column == ABSOLUTE:
        return bench.median * 1e3, bench.q1 * 1e3, bench.q3 * 1e3
    v = bench.bytes.get(column)
    return None if v is None else (v / _MIB, v / _MIB, v / _MIB)


def _collect(runs: Sequence[Run]) -> OrderedDict[str, OrderedDict[str, str]]:
    """group -> label -> fullname, in first-seen order."""
    groups: OrderedDict[str, OrderedDict[str, str]] = OrderedDict()
    for run in runs:
        for bench in run.benchmarks.values():
            lines = groups.setdefault(bench.group or _NO_GROUP, OrderedDict())
            label = series_label(bench)
            if label in lines and lines[label] != bench.fullname:
                label = bench.name
            lines.setdefault(label, bench.fullname)
    return groups


def _columns_of(runs: Sequence[Run], lines: dict[str, str]) -> list[str]:
    """The columns with at least one value in this group."""
    keys: set[str] = set()
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


def _baseline_of(runs: Sequence[Run], group: str) -> str | None:
    """The variant the group's time was paired with, for the ratio panel's title."""
    return next(
        (
            b.baseline
            for run in runs
            for b in run.benchmarks.values()
            if (b.group or _NO_GROUP) == group and b.baseline
        ),
        None,
    )


def _series(runs: Sequence[Run], lines: dict[str, str], column: str) -> list[tuple[str, Series]]:
    """(label, one point per run) of every line of the group with a value in `column`."""
    series = []
    nothing: Point = (math.nan, math.nan, math.nan)
    for label, fullname in lines.items():
        points = [_value(run.benchmarks.get(fullname), column) for run in runs]
        if any(p is not None for p in points):
            series.append((label, tuple(p if p is not None else nothing for p in points)))
    return series


def _close(a: Series, b: Series, rel: float) -> bool:
    """Every finite value of series `a` within `rel` of series `b`'s (NaN where both are NaN)."""
    for u, v in zip(a, b, strict=False):
        x, y = u[0], v[0]
        if math.isnan(x) or math.isnan(y):
            if math.isnan(x) != math.isnan(y):
                return False
        elif abs(x - y) > rel * max(abs(x), abs(y)):
            return False
    return True


def _merge_overlapping(series: list[tuple[str, Series]]) -> list[tuple[str, str, Series]]:
    """[(label, values)] -> [(first label, label text, values)]: series that would hide each
    other (equal, or within _NEAR of each other at every run) are drawn once, labelled ``a = b``
    (identical) or ``a ~ b`` (within _NEAR)."""
    merged: list[tuple[Series, list[tuple[str, bool]]]] = []  # (first values, [(label, exact)])
    for label, values in series:
        for first, members in merged:
            if _close(first, values, _NEAR):
                members.append((label, first == values))
                break
        else:
            merged.append((values, [(label, True)]))
    out = []
    for values, members in merged:
        text = members[0][0]
        for label, exact in members[1:]:
            text += (" = " if exact else " ~ ") + label
        if len(members) > 1:
            text += " (identical)" if all(e for _, e in members) else f" (within {_NEAR:.1%})"
        out.append((members[0][0], text, values))
    return out


def _drawn(column: str, series: list[tuple[str, Series]]) -> list[tuple[str, str, Series]]:
    """(label for the style, legend text, values) of each line of a panel. Memory figures of
    several variants coincide (every fused kernel saves the same buffers): drawn once, saying so.
    Time series are never merged."""
    if column in (RATIO, ABSOLUTE):
        return [(label, label, values) for label, values in series]
    return _merge_overlapping(series)


def _title(column: str, baseline: str | None) -> str:
    if column == RATIO:
        return f"time / {baseline or 'baseline'} (per-round ratio median, IQR)"
    if column == ABSOLUTE:
        return "time, ms (median, IQR)"
    return f"{column}, MiB"


# ------------------------------------------------------------------------------------------------
# How to draw it


@dataclass(frozen=True)
class _Style:
    """What every panel shares: each label's colour and marker, and the x axis (the runs)."""

    colours: dict[str, Colour]
    markers: dict[str, str]
    xs: list[int]
    ticks: list[int]  # the runs that get a tick label
    tick_labels: list[str]  # commit and date of each of `ticks`


def _style(runs: Sequence[Run], labels: list[str], cmap_name: str) -> _Style:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap(cmap_name)
    step = max(1, math.ceil(len(runs) / 10))
    dated = [
        f"{run.label}\n{(run.datetime or '')[5:16].replace('T', ' ')}".rstrip() for run in runs
    ]
    xs = list(range(len(runs)))
    return _Style(
        colours={lbl: cmap(i % cmap.N) for i, lbl in enumerate(labels)},
        markers={lbl: _MARKERS[i % len(_MARKERS)] for i, lbl in enumerate(labels)},
        xs=xs,
        ticks=xs[::step],
        tick_labels=dated[::step],
    )


def _draw_lines(ax: Axes, column: str, lines: list[tuple[str, str, Series]], style: _Style) -> None:
    """One line a series, spread sideways a little so that near-equal ones do not hide each
    other; time lines with their interquartile band."""
    timed = column in (RATIO, ABSOLUTE)
    last = max(1, len(lines) - 1)
    width = 0.2 if len(lines) > 1 and len(style.xs) > 1 else 0.0
    for k, (first, text, values) in enumerate(lines):
        offset = (k - (len(lines) - 1) / 2) * width / last
        x = [xi + offset for xi in style.xs]
        colour = style.colours[first]
        # Earlier series are drawn wider, later ones on top of them thinner: where two lines
        # coincide for some runs only, the one underneath still shows as a rim.
        wide = 0.0 if timed else (len(lines) - 1 - k) / last
        ax.plot(
            x,
            [v[0] for v in values],
            marker=style.markers[first],
            ms=4 + 3 * wide,
            lw=1.2 + 2.4 * wide,
            color=colour,
            zorder=2 + k,
            label="\n".join(textwrap.wrap(text, 44)),
        )
        if timed:
            ax.fill_between(
                x, [v[1] for v in values], [v[2] for v in values], color=colour, alpha=0.15, lw=0
            )


def _name_row(ax: Axes, group: str) -> None:
    """The group's name above the first panel of its row."""
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


def _dress_x_axis(ax: Axes, style: _Style) -> None:
    """Tick labels (slanted when more than fit side by side) and the legend under them."""
    ax.set_xticks(style.ticks)
    slanted = len(style.ticks) > 4
    labels = [t.replace("\n", " ") if slanted else t for t in style.tick_labels]
    ax.set_xticklabels(
        labels, fontsize=7, rotation=35 if slanted else 0, ha="right" if slanted else "center"
    )
    # below the panel (inside it, the legend hides the lines), clear of the tick labels
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.62 if slanted else -0.2),
        ncol=2,
        frameon=False,
    )
    if len(style.xs) == 1:
        ax.set_xlim(-0.5, 0.5)


def _draw_panel(
    ax: Axes,
    runs: Sequence[Run],
    lines: dict[str, str],
    column: str,
    title: str,
    group: str | None,
    style: _Style,
) -> None:
    """One figure of one group across the runs; `group` names the row on its first panel."""
    _draw_lines(ax, column, _drawn(column, _series(runs, lines, column)), style)
    if column == RATIO:
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    if group is not None:
        _name_row(ax, group)
    _dress_x_axis(ax, style)
    ax.tick_params(axis="y", labelsize=8)


def _figure(nrows: int, ncols: int) -> tuple[Figure, list[list[Axes]]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 5.0 * nrows + 0.8), squeeze=False)
    return fig, [list(row) for row in axes]


def plot_history(runs: Sequence[Run], path: str, title: str | None = None) -> str:
    """Write a PNG of `runs` (`verify.compare.results.Run`s, oldest first) to `path`."""
    groups = _collect(runs)
    group_names = sorted(groups, key=_group_key)
    layout = {g: _columns_of(runs, groups[g]) for g in group_names}
    labels = list(OrderedDict.fromkeys(lbl for g in group_names for lbl in groups[g]))
    ncols = max((len(c) for c in layout.values()), default=1)
    fig, axes = _figure(max(1, len(group_names)), ncols)
    style = _style(runs, labels, "tab10" if len(labels) <= 10 else "tab20")
    for group, row in zip(group_names, axes, strict=False):
        columns = layout[group]
        baseline = _baseline_of(runs, group)
        for c, ax in enumerate(row):
            if c >= len(columns):
                ax.set_visible(False)
                continue
            name = group if c == 0 else None
            _draw_panel(
                ax, runs, groups[group], columns[c], _title(columns[c], baseline), name, style
            )
    _finish(fig, title or f"Benchmark history: {len(runs)} run(s), oldest first (x: commit, date)")
    fig.savefig(path, dpi=90)
    _close_figure(fig)
    return str(path)


def _finish(fig: Figure, title: str) -> None:
    fig.suptitle(title, fontsize=12, fontweight="bold", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.985), h_pad=3.0)


def _close_figure(fig: Figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)
