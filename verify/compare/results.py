"""Loading and validating pytest-benchmark JSON files (``--benchmark-json`` output, or the runs
``--benchmark-autosave``/``--benchmark-save`` keep under ``--benchmark-storage``).

`load_run(path)` returns a `Run` or raises `BenchmarkFileError`, whose message names the file and
what is wrong with it. `load_history(directory)` loads every saved run of a storage directory
(layout ``DIR/<machine-id>/NNNN_<name>.json``), oldest first.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

__all__ = ["BenchmarkFileError", "Benchmark", "Run", "load_run", "load_history", "bytes_figures"]


class BenchmarkFileError(Exception):
    """A file is missing, unreadable, not JSON, or not a pytest-benchmark result file."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def bytes_figures(extra_info: object) -> dict[str, float]:
    """The numeric ``extra_info`` entries whose key ends in ``bytes``."""
    if not isinstance(extra_info, dict):
        return {}
    return {
        k: v
        for k, v in extra_info.items()
        if isinstance(k, str) and k.endswith("bytes") and _number(v)
    }


@dataclass
class Benchmark:
    """One benchmark of a run: its timing statistics (seconds) and memory figures (bytes)."""

    fullname: str
    name: str
    group: str | None
    median: float
    q1: float
    q3: float
    rounds: int
    extra_info: dict[str, Any] = field(default_factory=dict)
    data: list[float] | None = None  # per-round times (seconds), when the file kept them

    @property
    def baseline(self) -> str | None:
        """The variant this benchmark's rounds were paired with (`verify.benchmarks.harness`)."""
        name = self.extra_info.get("baseline")
        return name if isinstance(name, str) and self.ratios else None

    @property
    def ratios(self) -> list[float] | None:
        """Per-round time ratios to the paired baseline step, or None."""
        values = self.extra_info.get("time_vs_baseline")
        if isinstance(values, list) and values and all(_number(v) and v > 0 for v in values):
            return [float(v) for v in values]
        return None

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def bytes(self) -> dict[str, float]:
        return bytes_figures(self.extra_info)

    @property
    def variant(self) -> str | None:
        """The variant it ran (``extra_info["variant"]``), when the benchmark recorded one."""
        variant = self.extra_info.get("variant")
        return str(variant) if variant else None


@dataclass
class Run:
    """A pytest-benchmark result file."""

    path: str
    benchmarks: dict[str, Benchmark]  # by fullname, in file order
    commit_id: str | None = None
    commit_dirty: bool = False
    datetime: str | None = None
    machine: str | None = None
    threads: int | None = None  # torch threads the benchmarks ran with (machine_info.torch)

    @property
    def label(self) -> str:
        """The commit id (short, ``*`` when the tree was dirty), else the file name."""
        if self.commit_id:
            return self.commit_id[:8] + ("*" if self.commit_dirty else "")
        return Path(self.path).stem


def _parse_benchmark(path: str | os.PathLike[str], index: int, entry: object) -> Benchmark:
    where = f"benchmarks[{index}]"
    if not isinstance(entry, dict):
        raise BenchmarkFileError(path, f"not a pytest-benchmark file: {where} is not an object")
    name = entry.get("fullname") or entry.get("name")
    if not isinstance(name, str) or not name:
        raise BenchmarkFileError(
            path, f"not a pytest-benchmark file: {where} has no 'fullname'/'name'"
        )
    stats = entry.get("stats")
    if not isinstance(stats, dict):
        raise BenchmarkFileError(
            path, f"not a pytest-benchmark file: {where} ({name}) has no 'stats' object"
        )
    missing = [k for k in ("median", "q1", "q3") if not _number(stats.get(k))]
    if missing:
        raise BenchmarkFileError(path, f"benchmark {name} has no numeric stats {missing}")
    extra = entry.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise BenchmarkFileError(path, f"benchmark {name}: 'extra_info' is not an object")
    rounds = stats.get("rounds")
    kept = stats.get("data")
    data = (
        [float(v) for v in kept]
        if isinstance(kept, list) and kept and all(_number(v) for v in kept)
        else None
    )
    return Benchmark(
        fullname=name,
        name=str(entry.get("name") or name),
        group=group if isinstance(group := entry.get("group"), str) else None,
        median=float(stats["median"]),
        q1=float(stats["q1"]),
        q3=float(stats["q3"]),
        rounds=int(rounds) if _number(rounds) else 0,
        extra_info=extra,
        data=data,
    )


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load and validate one pytest-benchmark JSON file."""
    p = Path(path)
    if not p.exists():
        raise BenchmarkFileError(path, "no such file")
    if p.is_dir():
        raise BenchmarkFileError(path, "is a directory, not a pytest-benchmark JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkFileError(path, f"cannot be read ({exc.__class__.__name__}: {exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkFileError(path, f"is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchmarkFileError(
            path,
            "not a pytest-benchmark JSON file (no top-level 'benchmarks' list; "
            "write one with `pytest --benchmark-json PATH`)",
        )
    benchmarks = {}
    for i, entry in enumerate(data["benchmarks"]):
        bench = _parse_benchmark(path, i, entry)
        if bench.fullname in benchmarks:
            raise BenchmarkFileError(path, f"benchmark {bench.fullname} appears twice")
        benchmarks[bench.fullname] = bench
    commit = _object(data.get("commit_info"))
    machine = _object(data.get("machine_info"))
    return Run(
        path=str(path),
        benchmarks=benchmarks,
        commit_id=commit.get("id") if isinstance(commit.get("id"), str) else None,
        commit_dirty=bool(commit.get("dirty")),
        datetime=data.get("datetime") if isinstance(data.get("datetime"), str) else None,
        machine=machine.get("node") if isinstance(machine.get("node"), str) else None,
        threads=_threads(machine),
    )


def _object(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (optional sections of the file)."""
    return value if isinstance(value, dict) else {}


def _threads(machine_info: dict[str, Any]) -> int | None:
    torch_info = machine_info.get("torch")
    threads = torch_info.get("threads") if isinstance(torch_info, dict) else None
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else None


_COUNTER = re.compile(r"^(\d+)_")


def load_history(directory: str | os.PathLike[str]) -> list[Run]:
    """Every saved run under a ``--benchmark-storage`` directory, oldest first.

    Looks for ``DIR/<machine-id>/NNNN_*.json`` (pytest-benchmark's layout) and, for convenience,
    ``DIR/NNNN_*.json``. Runs are ordered by their ``datetime``, then by their counter NNNN.
    Raises `BenchmarkFileError` when the directory is missing or holds no runs, or a run is invalid.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BenchmarkFileError(directory, "no such benchmark storage directory")
    paths = [
        p for p in list(root.glob("*.json")) + list(root.glob("*/*.json")) if _COUNTER.match(p.name)
    ]
    if not paths:
        raise BenchmarkFileError(
            directory,
            "holds no saved runs (expected <machine-id>/NNNN_*.json, "
            "as written by `pytest --benchmark-autosave`)",
        )
    runs = [(load_run(p), _counter(p)) for p in paths]
    runs.sort(key=lambda rc: (rc[0].datetime or "", rc[1], rc[0].path))
    return [run for run, _ in runs]


def _counter(path: Path) -> int:
    """The NNNN of a saved run's file name ``NNNN_*.json``."""
    match = _COUNTER.match(path.name)
    return int(match.group(1)) if match else 0
