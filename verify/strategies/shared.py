"""One strategy object per argument list, for the composites the case strategies are built from,
and for the integers and samples they draw from."""

from __future__ import annotations

import functools

from hypothesis import strategies as st


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


# The integers and samples a case is drawn from, one object per argument list too: Hypothesis's
# own cache of `st.integers(...)` still costs a call through its validation wrapper per draw, and
# `st.sampled_from(...)` builds and labels a new object each time: about a tenth of drawing a
# case. The same object gives the same values for the same choices (and labels do not steer the
# derandomised draws: every `ci` case of `pytest verify` stayed the same). Equal tuples of other
# types, (1, 0) and (True, False), would share one `choice`.
BOOLEANS = st.booleans()
ints = shared(st.integers)
choice = shared(st.sampled_from)
