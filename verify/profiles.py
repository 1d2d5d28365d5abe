"""Hypothesis profiles: `ci` (derandomised, fits CI's budget), `dev` (the local default: random,
with the example database so a found failure is replayed first), `fuzz` (thousands of examples per
property, for hunting). Select with --hypothesis-profile NAME; the default is `ci` when $CI is
set."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# Our strategies filter on purpose (legal geometries, well-spread channels for finite
# differences) and some cases are slower than Hypothesis expects; neither is a problem here.
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
_COMMON: dict[str, Any] = dict(deadline=None, print_blob=True, suppress_health_check=_QUIET)

# `dev` and `fuzz` say derandomize=False and name their database: on a machine with $CI set,
# Hypothesis's own defaults are derandomised and without a database, which would make every
# worker and machine of a campaign draw the same examples and forget what they found.
# Where Hypothesis's default database lives: .hypothesis/examples in the working directory.
_LOCAL_DB = DirectoryBasedExampleDatabase(
    os.path.join(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY", ".hypothesis"), "examples")
)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=60, derandomize=False, database=_LOCAL_DB, **_COMMON)
settings.register_profile(
    "fuzz", max_examples=2000, derandomize=False, database=_LOCAL_DB, **_COMMON
)


def default_profile() -> str:
    return "ci" if os.environ.get("CI") else "dev"


settings.load_profile(default_profile())
