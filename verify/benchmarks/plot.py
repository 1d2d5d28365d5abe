"""Plot benchmark history: time and memory of every benchmark across saved runs.

One row of subplots per benchmark group (model and batch size), columns: median time (line) with
its interquartile range (shaded band), then the memory figures (``saved_bytes``, ``peak_bytes``,
other ``*bytes`` keys except ``saved_activation_bytes``, which differs from ``saved_bytes`` only
by the constant parameter size). One line per benchmark, coloured by variant the same way in every
subplot, with one legend for the figure. The x axis is the run, oldest first, labelled by commit
id (``*``: uncommitted changes) and date. A y axis switches to log scale when its values span more
than 20x.
"""
from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["plot_history"]

_PREFERRED = ("saved_bytes", "peak_bytes")
_HIDDEN = ("saved_activation_bytes",)
_MIB = 1024.0 * 1024.0


def _group_key(name: str):
    """Sort groups by name, with numbers compared as numbers (batch=32 before batch=128)."""
    import re

    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name or "")]


def _columns(runs) -> list:
    keys = set()
    for run in runs:
        for bench in run.benchmarks.values():
            keys.update(bench.bytes)
    keys -= set(_HIDDEN)
    ordered = [k for k in _PREFERRED if k in keys] + sorted(keys - set(_PREFERRED))
    return ["time"] + ordered


def _x_labels(runs) -> list:
    labels = []
    for run in runs:
        date = (run.datetime or "")[:16].replace("T", " ")
        labels.append(f"{run.label}\n{date[5:]}" if date else run.label)
    return labels


def _log_if_wide(ax, values) -> None:
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 20:
        ax.set_yscale("log")


def plot_history(runs, path, title: str | None = None) -> str:
    """Write a PNG of `runs` (a list of `verify.benchmarks.results.Run`, oldest first) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # group -> label -> fullname (a benchmark is one line; its label is its variant)
    groups: "OrderedDict[str, OrderedDict[str, str]]" = OrderedDict()
    for run in runs:
        for bench in run.benchmarks.values():
            groups.setdefault(bench.group or "(no group)", OrderedDict())
            lines = groups[bench.group or "(no group)"]
            label = bench.label
            if label in lines and lines[label] != bench.fullname:
                label = bench.name
            lines.setdefault(label, bench.fullname)
    group_names = sorted(groups, key=_group_key)
    columns = _columns(runs)
    labels = list(OrderedDict.fromkeys(lbl for g in group_names for lbl in groups[g]))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colours = {lbl: cmap(i % cmap.N) for i, lbl in enumerate(labels)}

    nrows, ncols = max(1, len(group_names)), len(columns)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols + 0.5, 2.7 * nrows + 1.4),
                             squeeze=False, sharex=True)
    xs = list(range(len(runs)))
    for r, group in enumerate(group_names):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            all_values = []
            for label, fullname in groups[group].items():
                benches = [run.benchmarks.get(fullname) for run in runs]
                colour = colours[label]
                if column == "time":
                    med = [b.median * 1e3 if b else math.nan for b in benches]
                    q1 = [b.q1 * 1e3 if b else math.nan for b in benches]
                    q3 = [b.q3 * 1e3 if b else math.nan for b in benches]
                    ax.plot(xs, med, marker="o", ms=3.5, lw=1.5, color=colour, label=label)
                    ax.fill_between(xs, q1, q3, color=colour, alpha=0.18, lw=0)
                    all_values += med
                else:
                    vals = [b.bytes.get(column) / _MIB if b and column in b.bytes else math.nan
                            for b in benches]
                    ax.plot(xs, vals, marker="s", ms=3.5, lw=1.5, color=colour, label=label)
                    all_values += vals
            if not any(v == v for v in all_values):  # all NaN
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                        color="grey")
            else:
                _log_if_wide(ax, all_values)
            ax.grid(True, which="major", alpha=0.3)
            if r == 0:
                ax.set_title("fwd+bwd time: median, IQR band" if column == "time" else column,
                             fontsize=11)
            if c == 0:
                ax.set_ylabel(f"{group}\n\nms", fontsize=9)
            elif column != "time":
                ax.set_ylabel("MiB", fontsize=9)
    tick_labels = _x_labels(runs)
    step = max(1, math.ceil(len(runs) / 12))
    for ax in axes[-1]:
        ax.set_xticks(xs[::step])
        ax.set_xticklabels(tick_labels[::step], fontsize=8, rotation=0 if len(runs) <= 6 else 45,
                           ha="center" if len(runs) <= 6 else "right")
        ax.set_xlabel("run (commit, date), oldest first", fontsize=9)
    if len(runs) == 1:
        for row in axes:
            for ax in row:
                ax.set_xlim(-0.5, 0.5)
    handles = [plt.Line2D([], [], color=colours[lbl], marker="o", lw=2) for lbl in labels]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), frameon=False,
               fontsize=10, bbox_to_anchor=(0.55, 1.0))
    fig.suptitle(title or f"Benchmark history: {len(runs)} run(s)", y=1.0 - 0.12 / fig.get_figheight(),
                 fontsize=12, fontweight="bold", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
