"""Failure reports that a kernel engineer can act on, replay lines, repro scripts, and the
end-of-run table of examples and worst error per variant and property."""
from __future__ import annotations

import hashlib
import re
import shlex
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# variant name -> the --variant SPEC it was loaded from (set by verify.variants)
VARIANT_SPECS: dict[str, str] = {}
# Directory for standalone repro scripts (--verify-repro-dir); None disables them.
REPRO_DIR: list = [None]
# (variant name, property, case) of the latest failure, whose repro script is written when the
# test ends (Hypothesis replays the minimal example last).
LAST_FAILURE: list = [None]


class PropertyFailure(AssertionError):
    """A variant broke a property. The message is the whole report; `ratio` is the worst error
    as a multiple of its bound where the failure is a numeric one (inf otherwise)."""

    def __init__(self, message: str, ratio: float = float("inf")):
        super().__init__(message)
        self.ratio = ratio


@dataclass
class Tally:
    examples: int = 0
    failures: int = 0
    worst_ratio: float = 0.0
    worst_case: str = ""


TALLIES: dict = defaultdict(Tally)


def record(variant_name: str, prop: str, ratio: float, case=None, failed: bool = False,
           tier: str = "small") -> None:
    tally = TALLIES[(variant_name, prop, tier)]
    tally.examples += 1
    tally.failures += int(failed)
    if ratio > tally.worst_ratio or (failed and not tally.worst_case):
        tally.worst_ratio = ratio
        tally.worst_case = case.to_json() if case is not None else ""


def replay_command(variant_name: str, prop: str, case) -> str:
    spec = VARIANT_SPECS.get(variant_name, "fused.registry:BUILTIN_VARIANTS")
    return (f"python -m verify.replay --variant {shlex.quote(spec)} --name "
            f"{shlex.quote(variant_name)} --property {prop} --case {shlex.quote(case.to_json())}")


def repro_path(variant_name: str, prop: str, case) -> Path | None:
    directory = REPRO_DIR[0]
    if directory is None:
        return None
    digest = hashlib.sha1(case.to_json().encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{variant_name}-{prop}-{digest}")
    return Path(directory) / f"{stem}.py"


def write_last_repro() -> Path | None:
    """Write the standalone repro script of the most recent failure. Called once a test has
    failed, when Hypothesis's last call was the shrunk, minimal example."""
    if LAST_FAILURE[0] is None:
        return None
    variant_name, prop, case = LAST_FAILURE[0]
    LAST_FAILURE[0] = None
    path = repro_path(variant_name, prop, case)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = VARIANT_SPECS.get(variant_name, "fused.registry:BUILTIN_VARIANTS")
    path.write_text(textwrap.dedent(f'''\
        """Standalone repro: variant {variant_name!r} breaks property {prop!r}.

        Run from the convbn-verify checkout: python {path.name}
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
        '''))
    return path


def failure_message(variant_name: str, prop: str, case, details: list[str]) -> str:
    lines = [f"variant {variant_name!r} breaks property {prop!r}",
             f"  size: {case.size()}",
             f"  case: {case.describe()}"]
    lines += [f"  {d}" for d in details]
    lines.append(f"  replay: {replay_command(variant_name, prop, case)}")
    LAST_FAILURE[0] = (variant_name, prop, case)
    path = repro_path(variant_name, prop, case)
    if path is not None:
        lines.append(f"  repro script: {path}")
    return "\n".join(lines)


def _tier_order(key):
    from verify.strategies.sizes import SIZE_TIERS
    variant_name, prop, tier = key
    return (variant_name, prop, SIZE_TIERS.index(tier) if tier in SIZE_TIERS else len(SIZE_TIERS))


def summary_rows() -> list[dict]:
    return [dict(variant=variant_name, property=prop, tier=tier, examples=t.examples,
                 failures=t.failures,
                 worst_ratio=None if t.worst_ratio == float("inf") else t.worst_ratio,
                 worst_case=t.worst_case)
            for (variant_name, prop, tier), t in sorted(TALLIES.items(),
                                                        key=lambda kv: _tier_order(kv[0]))]


def write_summary_json(path) -> None:
    import json
    Path(path).write_text(json.dumps(summary_rows(), indent=1))


def summary_lines() -> list[str]:
    if not TALLIES:
        return []
    rows = [("variant", "property", "size tier", "examples", "failed", "worst err/bound")]
    for (variant_name, prop, tier), t in sorted(TALLIES.items(), key=lambda kv: _tier_order(kv[0])):
        worst = "inf" if t.worst_ratio == float("inf") else f"{t.worst_ratio:.3g}"
        rows.append((variant_name, prop, tier, str(t.examples), str(t.failures), worst))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
