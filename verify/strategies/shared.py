"""One strategy object per argument list, for the composites the case strategies are built from."""

from __future__ import annotations

import functools


def shared(strategy_function):
    """`strategy_function` returning one strategy object per distinct (hashable) argument list.

    Hypothesis validates every new strategy object it draws from, and a composite that builds its
    parts inside each draw pays that for every part of every example: about half the cost of
    drawing a case. Reusing the objects changes no draw (the same choices give the same values)."""
    cached = functools.lru_cache(maxsize=1024)(strategy_function)

    @functools.wraps(strategy_function)
    def build(*args, **kwargs):
        try:
            return cached(*args, **kwargs)
        except TypeError:  # an unhashable argument (a list of dtypes): build it afresh
            return strategy_function(*args, **kwargs)

    return build
