"""verify.compare.stats: the one-sided Mann-Whitney test behind the gate's time rule."""

import itertools
import math
import random

import pytest

from verify.compare.stats import mann_whitney_greater, quartiles


def exact_p(base, head):
    """Exact one-sided p-value by enumerating every split of the pooled values (small n)."""
    pooled = list(base) + list(head)

    def u(h):
        return sum(1 for x in h for y in pooled if y < x) - len(h) * (len(h) - 1) / 2

    observed = u(head)
    splits = list(itertools.combinations(range(len(pooled)), len(head)))
    return sum(1 for idx in splits if u([pooled[i] for i in idx]) >= observed) / len(splits)


def test_complete_separation_is_significant():
    base, head = [1.0, 1.1, 1.2, 1.3, 1.4] * 2 + [1.2], [2.0, 2.1, 2.2, 2.3, 2.4] * 2 + [2.2]
    assert mann_whitney_greater(base, head) < 1e-4
    assert mann_whitney_greater(head, base) > 0.9999


def test_same_distribution_is_not():
    rng = random.Random(1)
    ps = [
        mann_whitney_greater(
            [rng.gauss(0, 1) for _ in range(11)], [rng.gauss(0, 1) for _ in range(11)]
        )
        for _ in range(400)
    ]
    # under the null hypothesis p is uniform: about 1% below 0.01, half below 0.5
    assert sum(p < 0.01 for p in ps) <= 12
    assert 0.4 < sum(p < 0.5 for p in ps) / len(ps) < 0.6


@pytest.mark.parametrize("seed", range(5))
def test_normal_approximation_is_close_to_exact(seed):
    rng = random.Random(seed)
    base = [rng.gauss(0, 1) for _ in range(7)]
    head = [rng.gauss(0.8, 1) for _ in range(7)]
    assert mann_whitney_greater(base, head) == pytest.approx(exact_p(base, head), abs=0.02)


def test_ties_and_empty_samples():
    assert mann_whitney_greater([1.0] * 5, [1.0] * 5) == 1.0
    assert mann_whitney_greater([], [1.0]) == 1.0
    assert math.isclose(mann_whitney_greater([1.0, 2.0], [1.0, 2.0]), 0.5, abs_tol=0.2)


def test_quartiles():
    assert quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
