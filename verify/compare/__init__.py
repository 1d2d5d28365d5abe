from verify.compare.cli import (
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_REGRESSION,
    Finding,
    GateRule,
    bytes_regressed,
    compare,
    compare_runs,
    main,
)

__all__ = [
    "Finding",
    "GateRule",
    "compare",
    "compare_runs",
    "bytes_regressed",
    "main",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_ERROR",
    "EXIT_INCONCLUSIVE",
]
