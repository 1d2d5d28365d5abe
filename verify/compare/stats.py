"""Small statistics for the regression gate: a one-sided Mann-Whitney U test and quartiles.

No SciPy: the project does not depend on it, and the gate needs one test. The p-value uses the
normal approximation with a continuity and tie correction, which is within a few percent of the
exact distribution from about 8 samples per side (the benchmarks time at least 11 rounds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

__all__ = ["mann_whitney_greater", "quartiles"]


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of `values`, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_greater(base: Sequence[float], head: Sequence[float]) -> float:
    """One-sided p-value of the hypothesis that `head`'s values tend to be larger than `base`'s.

    Small when nearly every HEAD sample exceeds nearly every BASE sample; about 0.5 for two
    samples of one distribution. 1.0 when either side is empty.
    """
    n1, n2 = len(base), len(head)
    if n1 == 0 or n2 == 0:
        return 1.0
    values = list(base) + list(head)
    ranks = _ranks(values)
    u_head = sum(ranks[n1:]) - n2 * (n2 + 1) / 2
    n = n1 + n2
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    ties = sum(t**3 - t for t in counts.values())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every value equal
        return 1.0
    z = (u_head - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def quartiles(values: Iterable[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of `values` (inclusive method; a single value is all three)."""
    values = list(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3
