"""Keep pytest from rewriting the asserts of library code the suite imports.

pytest rewrites the asserts of test files, and of every module of each installed distribution
that ships a pytest plugin: Hypothesis (its `hypothesispytest` entry point) and this package
(`verify.plugin`), so `hypothesis`, `fused`, `reference` and `verify`, about 150 modules, none of
them a test. It caches the rewritten bytecode beside the source, but not where bytecode is not
written (PYTHONDONTWRITEBYTECODE=1, usual in containers and CI images): there every pytest
process parsed, rewrote and compiled them again, about a second per process, two in a
crash-isolated run (the controller, then the worker before it can collect), a third of the fixed
cost of `pytest verify`. Their asserts are internal invariants; a plain AssertionError is all
they need. Test files (`python_files`), conftest files and the suite's pytest plugins, which
pytest marks one by one as it imports them, are still rewritten.

pytest has no public way to unmark a name; this edits the marks of its import hook
(`AssertionRewritingHook._must_rewrite`, a set since pytest 3) and does nothing where the hook
is absent (`--assert=plain`) or its internals differ. It must run before the libraries are
imported: verify.plugin calls it at `pytest_cmdline_main`, and only in a run of the suite
(`verify.isolation.runs_only_the_suite`), so that other sessions keep pytest's marks. (A later
pytest session in the same process then warns that `hypothesis` was imported unrewritten.)"""

from __future__ import annotations

import sys

LIBRARIES = ("hypothesis", "fused", "reference", "verify")


def leave_unrewritten(names=LIBRARIES, meta_path=None) -> list[str]:
    """Unmark `names` in pytest's assertion-rewriting import hook; the names it unmarked."""
    unmarked = []
    for finder in sys.meta_path if meta_path is None else meta_path:
        marks = getattr(finder, "_must_rewrite", None)
        cache = getattr(finder, "_marked_for_rewrite_cache", None)
        if not isinstance(marks, set) or not isinstance(cache, dict):
            continue
        unmarked += [name for name in names if name in marks]
        marks.difference_update(names)
        cache.clear()
    return unmarked
