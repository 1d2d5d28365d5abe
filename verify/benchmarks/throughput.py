"""`python -m verify.benchmarks.throughput --base PATH`: the suite's own speed, examples per second
of `forward` and `gradients` per size tier, for this checkout and another one side by side.

Each measurement is one `pytest verify/test_<property>.py` process in that checkout, on the
built-in `eager` variant and one tier, under a `fuzz`-style profile (random, a fresh example
database, N examples) with crash isolation on unless `--isolation off`: what a kernel engineer's
run pays, start-up included. The runs alternate between the two checkouts (A B A B ...) so that
the load of a shared machine falls on both; the table gives the median of each side and their
ratio. Only the checkouts' pytest command line is used, so any commit can be the base.

A run's fixed cost (import, worker start, collection) is the wall time of `--examples 1`.

`--catch NAME,...` measures instead what a kernel engineer waits for: the wall time of `CI=1 pytest
verify -x --variant` one planted bug of the checkout's gallery (`--gallery`, a list of Variants)
until it stops on the first failure, alternated between the checkouts, with the median and the
worst per side."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PROPERTIES = ("forward", "gradients")
TIERS = ("small", "tile", "split", "large", "wide")
VARIANT = "eager"

# Registered in the measured process through `-p`: the `fuzz` profile's settings with the
# example count and database directory this script chooses, independent of the checkout. It
# imports Hypothesis when pytest configures, as a user's run does (through verify.plugin), not
# when `-p` loads it, before the checkout's plugin could keep pytest from rewriting Hypothesis
# (verify.assert_rewriting); it runs before Hypothesis's plugin loads the profile.
_PROFILE_PLUGIN = """
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from hypothesis import HealthCheck, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    settings.register_profile(
        "throughput",
        max_examples=int(os.environ["CONVBN_THROUGHPUT_EXAMPLES"]),
        derandomize=False,
        database=DirectoryBasedExampleDatabase(os.environ["CONVBN_THROUGHPUT_DB"]),
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
"""


def cached_rewrites(roots) -> list[Path]:
    """pytest's rewritten bytecode under `roots` (`__pycache__/*-pytest-*.pyc`).

    Where bytecode is not written (PYTHONDONTWRITEBYTECODE, as on CI machines), pytest still
    reads what an earlier run wrote. A checkout whose pytest rewrites Hypothesis and its own
    library modules (13103c8 does; verify.assert_rewriting stops it) then skips work it would
    do on a fresh machine and looks faster than it is."""
    # a set: a checkout may hold the virtual environment whose site-packages is another root
    return sorted(
        {p.resolve() for root in roots for p in Path(root).rglob("__pycache__/*-pytest-*.pyc")}
    )


def _warn_of_cached_rewrites(sides: dict) -> None:
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    roots = [Path(sysconfig.get_paths()["purelib"]), *sides.values()]
    found = cached_rewrites(roots)
    if found:
        print(
            "warning: pytest's rewritten bytecode, left by a run that wrote bytecode "
            f"({len(found)} files, e.g. {found[0]}), makes a checkout that rewrites libraries "
            "look faster than on a fresh machine; for a fair comparison delete it: find "
            + " ".join(str(r) for r in roots)
            + " -name '*-pytest-*.pyc' -delete",
            file=sys.stderr,
        )


def run_once(checkout: Path, prop: str, tier: str, examples: int, isolation: bool, tmp: Path):
    """(examples run, wall seconds, seconds in the test itself) of one pytest process in
    `checkout`; wall minus the test is the run's fixed cost (import, worker start, collection)."""
    summary = tmp / "summary.json"
    db = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(
        os.environ,
        PYTHONPATH=f"{checkout}{os.pathsep}{tmp}",
        OMP_NUM_THREADS="1",
        CONVBN_THROUGHPUT_EXAMPLES=str(examples),
        CONVBN_THROUGHPUT_DB=str(db),
    )
    env.pop("CI", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"verify/test_{prop}.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "convbn_throughput_profile",
        "--hypothesis-profile",
        "throughput",
        "-k",
        f"{VARIANT} and {tier}",
        "--verify-summary-json",
        str(summary),
        "--durations=1",
        "--durations-min=0",
    ]
    if not isolation:
        command += ["-n", "0"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0 or not summary.exists():
        raise SystemExit(
            f"pytest failed in {checkout} ({prop}, {tier}, exit {done.returncode}):\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    rows = json.loads(summary.read_text())
    summary.unlink()
    call = re.search(rf"([\d.]+)s call\s+\S*test_{prop}\[", done.stdout)
    return _examples(rows, prop, tier), wall, float(call.group(1)) if call else wall


def _examples(rows, prop: str, tier: str) -> int:
    """The example count of (eager, prop, tier) in a --verify-summary-json file."""
    if isinstance(rows, dict):
        rows = rows.get("rows", rows.get("results", []))
    return sum(
        int(r["examples"])
        for r in rows
        if r.get("variant") == VARIANT and r.get("property") == prop and r.get("tier") == tier
    )


def _row(prop: str, tier: str, base: list, head: list) -> str:
    """One table line from the (examples, wall s, test s) runs of each side, in run order."""
    cells = []
    for seconds in (1, 2):  # the whole process, the test itself
        b, h = ([n[0] / max(n[seconds], 1e-9) for n in runs] for runs in (base, head))
        ratio = statistics.median(y / x for x, y in zip(b, h, strict=True))
        cells.append(f"{statistics.median(b):>8.1f} {statistics.median(h):>6.1f} {ratio:>5.2f}x")
    fixed = [statistics.median(r[1] - r[2] for r in runs) for runs in (base, head)]
    return (
        f"{prop:<10} {tier:<6} {head[-1][0]:>8} | {cells[0]} | {cells[1]} | "
        f"{fixed[0]:>7.1f} {fixed[1]:>5.1f}"
    )


# Imported in the measured checkout: one planted bug of its gallery as the --variant under test.
_CATCH_VARIANT = """
from {module} import {attr} as _ALL

VARIANT = next(v for v in _ALL if v.name == {name!r})
"""


def time_to_catch(checkout: Path, name: str, gallery: str, tmp: Path) -> float:
    """Seconds until `CI=1 pytest verify -x --variant <gallery bug name>` in `checkout` stops on
    the bug; a run that does not catch it is an error."""
    module, attr = gallery.split(":")
    spec = tmp / f"catch_{name}.py"
    spec.write_text(_CATCH_VARIANT.format(module=module, attr=attr, name=name))
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1", CI="1")
    command = [sys.executable, "-m", "pytest", "verify", "-x", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    done = subprocess.run(
        command + ["--variant", f"{spec}:VARIANT"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    # Exit 1 on the failure; 2 also counts where it says "failed": 13103c8 turned `-x` into
    # pytest's "interrupted" (2) under crash isolation.
    caught = done.returncode == 1 or (done.returncode == 2 and " failed" in done.stdout)
    if not caught:
        raise SystemExit(
            f"{name} was not caught in {checkout} (exit {done.returncode}):\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    return wall


def catch_table(sides: dict, names: list[str], gallery: str, repeats: int) -> None:
    print(f"time to catch with -x (s): CI=1 pytest verify -x --variant <{gallery} bug>")
    print(f"{'bug':<32} {'base':>7} {'head':>7}")
    per_side: dict[str, list[float]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory() as name:
        for bug in names:
            walls: dict[str, list[float]] = {"base": [], "head": []}
            for _ in range(repeats):
                for side, checkout in sides.items():
                    walls[side].append(time_to_catch(checkout, bug, gallery, Path(name)))
            cells = {side: statistics.median(w) for side, w in walls.items()}
            for side in per_side:
                per_side[side].append(cells[side])
            print(f"{bug:<32} {cells['base']:>7.1f} {cells['head']:>7.1f}", flush=True)
    for what, pick in (("median", statistics.median), ("worst", max)):
        print(f"{what:<32} {pick(per_side['base']):>7.1f} {pick(per_side['head']):>7.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.benchmarks.throughput")
    parser.add_argument("--base", required=True, type=Path, help="the checkout to compare against")
    parser.add_argument("--head", default=Path.cwd(), type=Path, help="default: this directory")
    parser.add_argument("--examples", type=int, default=1000, help="the profile's max_examples")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternated")
    parser.add_argument("--properties", default=",".join(PROPERTIES))
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--isolation", choices=("on", "off"), default="on")
    parser.add_argument(
        "--catch", default="", metavar="NAME,...", help="time to catch these planted bugs instead"
    )
    parser.add_argument(
        "--gallery",
        default="tests.gallery.bugs:ALL",
        metavar="MODULE:ATTR",
        help="where --catch finds the bugs, in each checkout",
    )
    args = parser.parse_args(argv)
    sides = {"base": args.base.resolve(), "head": args.head.resolve()}
    _warn_of_cached_rewrites(sides)
    if args.catch:
        print(f"base {sides['base']}\nhead {sides['head']}")
        catch_table(sides, args.catch.split(","), args.gallery, args.repeats)
        return 0
    print(f"base {sides['base']}\nhead {sides['head']}")
    print(f"variant {VARIANT}, max_examples {args.examples}, isolation {args.isolation}")
    print(
        "examples/s: 'run' over the whole pytest process, 'test' over the test itself; "
        "'fixed s': the rest (import, worker start, collection); medians, ratios head/base "
        "of adjacent runs"
    )
    print(
        f"{'property':<10} {'tier':<6} {'examples':>8} | {'run base':>8} {'head':>6} {'ratio':>6}"
        f" | {'test base':>8} {'head':>6} {'ratio':>6} | {'fixed s':>7} {'head':>5}"
    )
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "convbn_throughput_profile.py").write_text(_PROFILE_PLUGIN)
        for prop in args.properties.split(","):
            for tier in args.tiers.split(","):
                runs: dict[str, list[tuple]] = {"base": [], "head": []}
                for _ in range(args.repeats):
                    for side, checkout in sides.items():
                        runs[side].append(
                            run_once(
                                checkout, prop, tier, args.examples, args.isolation == "on", tmp
                            )
                        )
                print(_row(prop, tier, runs["base"], runs["head"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
