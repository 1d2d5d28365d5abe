"""The command line of the regression gate, ``python -m verify.compare`` (the package's docstring
says what it does): its arguments, what it prints, and its exit status."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from verify.compare.render import render_history, render_verdict
from verify.compare.results import BenchmarkFileError, Run, load_history, load_run
from verify.compare.steps import find_history_steps
from verify.compare.time_rule import DEFAULT_ALPHA, DEFAULT_MIN_BENCHMARKS, DEFAULT_TIME_THRESHOLD
from verify.compare.verdict import (
    DEFAULT_PEAK_TOLERANCE,
    FAIL,
    INCONCLUSIVE,
    PASS,
    GateRule,
    judge_runs,
)

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_REGRESSION", "EXIT_ERROR", "EXIT_INCONCLUSIVE"]

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3
_EXIT_STATUS = {PASS: EXIT_OK, FAIL: EXIT_REGRESSION, INCONCLUSIVE: EXIT_INCONCLUSIVE}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verify.compare",
        description="Compare two pytest-benchmark JSON files (exit 0 pass, 1 when HEAD's memory "
        "grew or its time grew beyond the noise, 3 when a time change is too noisy to "
        "judge, 2 on bad input), or find steps in a history of saved runs.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="BASE.json HEAD.json",
        help="two --benchmark-json files: the baseline, then the candidate",
    )
    parser.add_argument(
        "--time-threshold",
        type=float,
        default=DEFAULT_TIME_THRESHOLD,
        metavar="F",
        help="smallest relative slow-down of the median that counts (the minimum "
        "effect size; with --history, the smallest time step reported) "
        "(default: %(default)s = 12%%)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        metavar="P",
        help="significance level of the Mann-Whitney test on the rounds: a "
        "slow-down above the threshold with p >= P is NOISY, exit 3 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min-benchmarks",
        type=int,
        default=DEFAULT_MIN_BENCHMARKS,
        metavar="N",
        help="judge a variant's time only when it has N benchmarks in both runs "
        "(default: %(default)s; one benchmark's ratio drifts too much alone)",
    )
    parser.add_argument(
        "--absolute-time",
        action="store_true",
        help="also judge absolute times of benchmarks with no paired baseline (the "
        "baseline itself): only meaningful on a quiet, dedicated machine",
    )
    parser.add_argument(
        "--peak-tolerance",
        type=float,
        default=DEFAULT_PEAK_TOLERANCE,
        metavar="F",
        help="relative growth allowed for *peak*bytes figures "
        "(default: %(default)s; other bytes figures must never grow)",
    )
    parser.add_argument(
        "--history",
        metavar="DIR",
        help="a --benchmark-storage directory: list its saved runs (oldest first)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="with --history: write a plot of time and memory per benchmark across runs",
    )
    return parser


def _history(args: argparse.Namespace) -> int:
    try:
        runs = load_history(args.history)
    except BenchmarkFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    steps = find_history_steps(runs, args.time_threshold, args.absolute_time)
    print(render_history(runs, steps, args.time_threshold))
    if args.plot:
        return _plot(runs, args.plot)
    return EXIT_OK


def _plot(runs: list[Run], path: str) -> int:
    if importlib.util.find_spec("matplotlib") is None:  # optional: say so, not a traceback
        print("error: --plot needs matplotlib (pip install 'convbn-verify[plot]')", file=sys.stderr)
        return EXIT_ERROR
    from verify.compare.plot import plot_history

    plot_history(runs, path)
    print(f"wrote {path}")
    return EXIT_OK


def _compare(args: argparse.Namespace, rule: GateRule) -> int:
    try:
        base = load_run(args.files[0])
        head = load_run(args.files[1])
    except BenchmarkFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    verdict = judge_runs(base, head, rule)
    print(render_verdict(verdict))
    return _EXIT_STATUS[verdict.outcome]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.time_threshold < 0 or args.peak_tolerance < 0:
        parser.error("--time-threshold and --peak-tolerance must be >= 0")
    if not 0 < args.alpha < 1:
        parser.error("--alpha must be between 0 and 1")
    if args.history:
        if args.files:
            parser.error("--history takes no BASE/HEAD files")
        return _history(args)
    if args.plot:
        parser.error("--plot needs --history DIR")
    if len(args.files) != 2:
        parser.error("expected two files, BASE.json and HEAD.json (or --history DIR)")
    if args.min_benchmarks < 1:
        parser.error("--min-benchmarks must be >= 1")
    rule = GateRule(
        time_threshold=args.time_threshold,
        peak_tolerance=args.peak_tolerance,
        alpha=args.alpha,
        absolute_time=args.absolute_time,
        min_benchmarks=args.min_benchmarks,
    )
    return _compare(args, rule)
