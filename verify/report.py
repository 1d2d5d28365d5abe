"""Failure reports that a kernel engineer can act on, replay lines, repro scripts, and the
end-of-run table of examples and worst error per variant and property.

The state of a run (tallies, the SPEC each variant came from, the repro directory, the latest
failure) lives in a `ReportSession`, and nowhere else: the pytest plugin keeps one on the config
(`verify_session(config)`, the `report_session` fixture), as pytest-benchmark keeps
its `BenchmarkSession`, and hands it to `verify.hunt`; `python -m verify.replay` makes its own.
A property raises a `PropertyFailure` that carries the parts of its report; the session that
catches it completes the message with what only the run knows (the variant's SPEC in the replay
line, the repro script's path). `report_text` and `replay_command` only format."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
import sys
import textwrap
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from verify.case import Case

BUILTIN_SPEC = "fused.registry:BUILTIN_VARIANTS"


class PropertyFailure(AssertionError):
    """A variant broke a property. The message is the whole report (`report_text`); `ratio`
    is the worst error as a multiple of its bound where the failure is a numeric one (inf
    otherwise). Until a session completes it (`ReportSession.complete`), the replay line names
    the built-in variants' SPEC."""

    def __init__(
        self,
        variant_name: str,
        prop: str,
        case: Case,
        details: list[str],
        ratio: float = math.inf,
        headline: str | None = None,
    ):
        self.variant_name, self.prop, self.case = variant_name, prop, case
        self.details, self.headline, self.ratio = list(details), headline, ratio
        super().__init__(report_text(variant_name, prop, case, self.details, headline=headline))

    def __reduce__(self):
        # Pickles and copies with its parts and its (possibly completed) message.
        return (
            _rebuild_failure,
            (
                self.variant_name,
                self.prop,
                self.case,
                self.details,
                self.ratio,
                self.headline,
                self.args,
            ),
        )


def _rebuild_failure(
    variant_name: str,
    prop: str,
    case: Case,
    details: list[str],
    ratio: float,
    headline: str | None,
    args: tuple,
) -> PropertyFailure:
    failure = PropertyFailure(variant_name, prop, case, details, ratio, headline)
    failure.args = args
    return failure


def replay_command(variant_name: str, prop: str, case: Case, spec: str = BUILTIN_SPEC) -> str:
    """The command line that replays `case` on property `prop` of variant `variant_name`."""
    return (
        f"{shlex.quote(sys.executable)} -m verify.replay "
        f"--variant {shlex.quote(spec)} "
        f"--name {shlex.quote(variant_name)} --property {prop} "
        f"--case {shlex.quote(case.to_json())}"
    )


def report_text(
    variant_name: str,
    prop: str,
    case: Case,
    details: list[str],
    *,
    spec: str = BUILTIN_SPEC,
    repro_path: Path | None = None,
    headline: str | None = None,
) -> str:
    """The report: what broke, the case, the details (worst element first), how to replay."""
    lines = [
        headline or f"variant {variant_name!r} breaks property {prop!r}",
        f"  size: {case.size()}",
        f"  case: {case.describe()}",
    ]
    lines += [f"  {d}" for d in details]
    lines.append(f"  replay: {replay_command(variant_name, prop, case, spec)}")
    if repro_path is not None:
        lines.append(f"  repro script: {repro_path}")
    return "\n".join(lines)


# -- tallies ------------------------------------------------------------------------------------
# A tally is keyed by the fields of `TallyKey`; a new dimension (a size tier, ...) is one more
# field there and in `Tally.record`'s callers. Rows (dicts of key + tally fields) are how tallies
# travel between processes and into the summary JSON.
@dataclass(frozen=True)
class TallyKey:
    variant: str
    property: str
    tier: str = "small"

    def sort_key(self) -> tuple:
        """Variants and properties by name, size tiers small to large."""
        from verify.strategies.sizes import ALL_TIERS

        rank = ALL_TIERS.index(self.tier) if self.tier in ALL_TIERS else len(ALL_TIERS)
        return (self.variant, self.property, rank)


@dataclass
class Tally:
    examples: int = 0
    failures: int = 0
    worst_ratio: float = 0.0
    worst_case: str = ""
    # The known PyTorch bug id (or "unlisted") when the test's finding is one PyTorch's own ops
    # share (verify.upstream); "" for the kernel's own findings and passing tests.
    upstream: str = ""

    def add(self, ratio: float, case: Case | None, failed: bool) -> None:
        self.examples += 1
        self.failures += int(failed)
        if ratio > self.worst_ratio or (failed and not self.worst_case):
            self.worst_ratio = ratio
            # Serialised only here: most examples are not the worst, and to_json per example
            # was a tenth of an example's time at the small tier.
            self.worst_case = case.to_json() if case is not None else ""

    def merge(self, other: "Tally") -> None:
        self.examples += other.examples
        self.failures += other.failures
        if other.worst_ratio > self.worst_ratio or (other.failures and not self.worst_case):
            self.worst_ratio, self.worst_case = other.worst_ratio, other.worst_case
        self.upstream = other.upstream or self.upstream


_KEY_FIELDS = tuple(f.name for f in fields(TallyKey))
_TALLY_FIELDS = tuple(f.name for f in fields(Tally))


def tally_row(key: TallyKey, tally: Tally) -> dict:
    return {**asdict(key), **asdict(tally)}


def row_entry(row: dict) -> tuple[TallyKey, Tally]:
    return (
        TallyKey(**{k: row[k] for k in _KEY_FIELDS}),
        Tally(**{k: row[k] for k in _TALLY_FIELDS}),
    )


# -- the session ----------------------------------------------------------------------------------
class ReportSession:
    """The report state of one run (one per pytest process: each xdist worker has its own, and
    the controller merges the rows the workers hand over)."""

    def __init__(self, repro_dir: str | None = None):
        self.repro_dir = repro_dir
        self.variant_specs: dict[str, str] = {}  # variant name -> the --variant SPEC
        self.tallies: dict[TallyKey, Tally] = {}
        # (variant, property, case) of the latest failure: its repro script is written when the
        # test ends, because Hypothesis replays the minimal example last.
        self.last_failure: tuple[str, str, Case] | None = None
        self._unsent: dict[TallyKey, Tally] = {}  # recorded here, not yet handed on (xdist)

    # recording
    def record(
        self,
        variant_name: str,
        prop: str,
        ratio: float,
        case: Case | None = None,
        failed: bool = False,
        tier: str = "small",
    ) -> None:
        key = TallyKey(variant_name, prop, tier)
        for table in (self.tallies, self._unsent):
            table.setdefault(key, Tally()).add(ratio, case, failed)
        if failed and case is not None:
            self.last_failure = (variant_name, prop, case)

    def mark_upstream(self, variant_name: str, prop: str, tier: str, label: str) -> None:
        """The finding of this test is upstream (`verify.upstream`): `label` is the bug's id."""
        key = TallyKey(variant_name, prop, tier)
        for table in (self.tallies, self._unsent):
            table.setdefault(key, Tally()).upstream = label

    def take_unsent_rows(self) -> list[dict]:
        """Rows recorded since the last call: what a worker hands to the controller."""
        rows = [tally_row(k, t) for k, t in self._sorted(self._unsent)]
        self._unsent.clear()
        return rows

    def merge_rows(self, rows: list[dict]) -> None:
        for row in rows:
            key, tally = row_entry(row)
            self.tallies.setdefault(key, Tally()).merge(tally)

    # replay and repro
    def spec_of(self, variant_name: str) -> str:
        return self.variant_specs.get(variant_name, BUILTIN_SPEC)

    def replay_command(self, variant_name: str, prop: str, case: Case) -> str:
        return replay_command(variant_name, prop, case, self.spec_of(variant_name))

    def repro_path(self, variant_name: str, prop: str, case: Case) -> Path | None:
        if self.repro_dir is None:
            return None
        digest = hashlib.sha1(case.to_json().encode()).hexdigest()[:8]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{variant_name}-{prop}-{digest}")
        return Path(self.repro_dir) / f"{stem}.py"

    def report_text(
        self,
        variant_name: str,
        prop: str,
        case: Case,
        details: list[str],
        headline: str | None = None,
    ) -> str:
        """`report_text` with this run's SPEC for the variant and repro script path."""
        return report_text(
            variant_name,
            prop,
            case,
            details,
            spec=self.spec_of(variant_name),
            repro_path=self.repro_path(variant_name, prop, case),
            headline=headline,
        )

    def complete(self, failure: PropertyFailure) -> PropertyFailure:
        """Rewrite `failure`'s message with this run's replay SPEC and repro path; returns it."""
        failure.args = (
            self.report_text(
                failure.variant_name,
                failure.prop,
                failure.case,
                failure.details,
                headline=failure.headline,
            ),
        )
        return failure

    def write_repro(self, variant_name: str, prop: str, case: Case) -> Path | None:
        path = self.repro_path(variant_name, prop, case)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_repro_source(path, self.spec_of(variant_name), variant_name, prop, case))
        return path

    def write_last_repro(self) -> Path | None:
        """Write the repro script of the most recent failure (called once a test has failed,
        when Hypothesis's last call was the shrunk, minimal example)."""
        if self.last_failure is None:
            return None
        failure, self.last_failure = self.last_failure, None
        return self.write_repro(*failure)

    # the end-of-run table
    @staticmethod
    def _sorted(tallies: dict[TallyKey, Tally]) -> list[tuple[TallyKey, Tally]]:
        return sorted(tallies.items(), key=lambda item: item[0].sort_key())

    def summary_rows(self) -> list[dict]:
        rows = [tally_row(k, t) for k, t in self._sorted(self.tallies)]
        for row in rows:  # JSON has no infinity: a failure's ratio is null
            if row["worst_ratio"] == math.inf:
                row["worst_ratio"] = None
            label = row.pop("upstream")
            if label:
                import torch

                row.update(verdict="upstream", upstream_bug=label, pytorch=torch.__version__)
        return rows

    def write_summary_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.summary_rows(), indent=1))

    def summary_lines(self) -> list[str]:
        if not self.tallies:
            return []
        rows: list[tuple[str, ...]] = [
            ("variant", "property", "size tier", "examples", "failed", "worst err/bound")
        ]
        for key, t in self._sorted(self.tallies):
            worst = "inf" if t.worst_ratio == math.inf else f"{t.worst_ratio:.3g}"
            rows.append(
                (key.variant, key.property, key.tier, str(t.examples), str(t.failures), worst)
            )
        if any(t.upstream for t in self.tallies.values()):  # a column only where it says something
            verdicts = [
                f"upstream: {t.upstream}" if t.upstream else ""
                for _, t in self._sorted(self.tallies)
            ]
            rows = [
                row + (verdict,) for row, verdict in zip(rows, ["verdict"] + verdicts, strict=True)
            ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]


def _repro_source(path: Path, spec: str, variant_name: str, prop: str, case: Case) -> str:
    return textwrap.dedent(f'''\
        #!{sys.executable}
        """Standalone repro: variant {variant_name!r} breaks property {prop!r}.

        Run with the interpreter that ran the suite:
            {shlex.quote(sys.executable)} {shlex.quote(str(path))}
        """
        import sys

        from verify.case import Case
        from verify.replay import replay

        SPEC = {spec!r}
        NAME = {variant_name!r}
        PROPERTY = {prop!r}
        CASE = Case.from_json({case.to_json()!r})

        if __name__ == "__main__":
            sys.exit(replay(SPEC, NAME, PROPERTY, CASE))
        ''')


# -- the session of a pytest run ------------------------------------------------------------------
SESSION_KEY = pytest.StashKey[ReportSession]()


def verify_session(config: pytest.Config) -> ReportSession:
    """The run's `ReportSession`, which `verify.plugin` keeps on the pytest config."""
    return config.stash[SESSION_KEY]
