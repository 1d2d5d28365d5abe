"""The benchmark regression gate: compare two pytest-benchmark runs (time and memory), or find
where figures stepped across saved runs. Not to be confused with `verify.oracle_comparison`, which
compares a kernel's numbers with the oracle's; this package is about benchmarks only, and its
command line is part of the contract (docs/contract.md).

    python -m verify.compare BASE.json HEAD.json [--time-threshold 0.12] [--alpha 0.05]
                             [--min-benchmarks 3] [--peak-tolerance 0] [--absolute-time]
    python -m verify.compare --history DIR [--plot out.png] [--time-threshold 0.12]
                             [--absolute-time]

Comparison: for every benchmark present in both files (matched by full name), prints its time and
every ``extra_info`` figure whose key ends in ``bytes``, BASE next to HEAD, with the ratio
HEAD/BASE and a verdict. Benchmarks in only one file are listed and never fail.

* memory: any ``*bytes`` figure present in both grew at all. Saved-tensor bytes are exact and
  machine independent, so there is no allowance. Peak figures (keys containing ``peak``) are
  deterministic for a fixed torch build, thread count and device, so they are exact by default
  too; ``--peak-tolerance F`` allows a relative growth up to F for them (e.g. cuDNN autotuning).
* time: `verify.compare.time_rule` (the per-round time ratio to the eager baseline measured in
  the same run; a rank test plus a minimum effect size; absolute times only with
  ``--absolute-time``).

Exit status:

* 0: no regression, nothing inconclusive.
* 1: a regression (memory grew, or time SLOWER) on a benchmark present in both.
* 3: no regression, but some time change was as large as a regression and not distinguishable
  from the noise (NOISY): inconclusive, rerun on a quieter machine or with more rounds.
* 2: a file is missing, unreadable, not JSON, or not a pytest-benchmark file (the message names
  the file and the problem), or bad arguments.

History: ``--history DIR`` loads every run saved under a ``--benchmark-storage`` directory
(``DIR/<machine-id>/NNNN_*.json``), oldest first, lists them, and prints every step of a figure
across the runs (`verify.compare.steps`): the commit where it went up, and down. With
``--plot PNG`` it also draws them (`verify.compare.plot`).

The package, by job: `results` (reading pytest-benchmark files), `stats` and `time_rule` (the
time rule), `verdict` (two runs compared, as data), `steps` (steps across saved runs), `render`
(verdicts as text), `plot` (a history as a PNG), `cli` (the command line and its exit status).
"""

from verify.compare.cli import (
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_REGRESSION,
    main,
)
from verify.compare.verdict import Finding, GateRule, Verdict, bytes_regressed, judge_runs

__all__ = [
    "main",
    "judge_runs",
    "Verdict",
    "Finding",
    "GateRule",
    "bytes_regressed",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_ERROR",
    "EXIT_INCONCLUSIVE",
]
