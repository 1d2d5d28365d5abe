"""Fuzz campaigns: where Hypothesis keeps the failures it finds (`--verify-db`), and how long a run
hunts (`--verify-budget`) instead of how many examples it draws.

--verify-db SPEC (repeatable; several are searched and written together):
    none                      no database
    path/to/dir               a directory database (one machine; what `.hypothesis/` is)
    redis://host:port/N       a Redis database shared by many machines (pip install
                              'convbn-verify[redis]')
    SPEC:readonly             replay what SPEC holds, never write to it

--verify-budget DURATION (90s, 30m, 2h, 1h30m, or seconds): every property test of the run gets an
equal share of DURATION x workers and re-runs Hypothesis, a round of `ROUND_EXAMPLES` examples at a
time with a fresh random seed, until its share is spent (or it fails). Hypothesis has no time
limit of its own, and stopping it mid-run would skip shrinking; whole rounds keep every found
failure shrunk and saved. Use it with a non-derandomised profile (`fuzz` or `dev`)."""

from __future__ import annotations

import inspect
import re
import time

import pytest

ROUND_EXAMPLES = 50
_KEEP = object()  # no --verify-db: the profile's own database
_database_key = pytest.StashKey[object]()
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")
_share_key = pytest.StashKey[float]()


def parse_duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 1h30m, 45)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def open_database(spec: str):
    """The Hypothesis example database named by one --verify-db SPEC."""
    from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

    readonly = spec.endswith(":readonly")
    target = spec[: -len(":readonly")] if readonly else spec
    if target == "none":
        if readonly:
            raise ValueError("--verify-db none:readonly: 'none' has nothing to read")
        return None
    if target.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise ValueError(
                f"--verify-db {spec}: the Redis client is not installed: "
                "pip install 'convbn-verify[redis]'"
            ) from None
        db = RedisExampleDatabase(redis.Redis.from_url(target))
    elif "://" in target:
        raise ValueError(
            f"--verify-db {spec}: unknown scheme; use a directory, redis://host:port/N, or none"
        )
    else:
        db = DirectoryBasedExampleDatabase(target)
    return ReadOnlyDatabase(db) if readonly else db


def open_databases(specs: list[str]):
    from hypothesis.database import MultiplexedDatabase

    dbs = [db for db in (open_database(s) for s in specs) if db is not None]
    if len(dbs) > 1:
        return MultiplexedDatabase(*dbs)
    return dbs[0] if dbs else None


def pytest_addoption(parser):
    group = parser.getgroup("convbn-verify")
    group.addoption(
        "--verify-db",
        action="append",
        default=None,
        metavar="SPEC",
        help="Hypothesis example database: a directory, redis://host:port/N, or "
        "none; append :readonly to replay without writing; repeatable",
    )
    group.addoption(
        "--verify-budget",
        default=None,
        metavar="DURATION",
        help="hunt for DURATION (90s, 30m, 2h) instead of a fixed example count: "
        "each property test re-runs Hypothesis with new seeds until its share "
        "of the budget is spent",
    )


def pytest_configure(config):
    budget = config.getoption("verify_budget")
    try:
        config.stash[_share_key] = parse_duration(budget) if budget else 0.0
        specs = config.getoption("verify_db")
        database = open_databases(specs) if specs else _KEEP
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[_database_key] = database


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    # After every pytest_configure: Hypothesis's plugin has loaded --hypothesis-profile by now.
    from hypothesis import settings

    config = session.config
    changes = {}
    if config.stash[_database_key] is not _KEEP:
        changes["database"] = config.stash[_database_key]
    if config.stash[_share_key]:
        changes["max_examples"] = ROUND_EXAMPLES
    if changes:
        name = f"{settings.get_current_profile_name()}+convbn-verify"
        settings.register_profile(
            name, parent=settings.get_profile(settings.get_current_profile_name()), **changes
        )
        settings.load_profile(name)


def _is_property_test(item) -> bool:
    return getattr(
        getattr(item, "module", None), "PROPERTY", None
    ) is not None and "variant" in getattr(getattr(item, "callspec", None), "params", {})


def pytest_collection_modifyitems(config, items):
    budget = config.stash[_share_key]
    if not budget:
        return
    hunts = [i for i in items if _is_property_test(i) and not i.get_closest_marker("skip")]
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    share = budget * workers / max(1, len(hunts))
    for item in hunts:
        item.stash[_share_key] = share


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    share = pyfuncitem.stash.get(_share_key, 0.0)
    if not share:
        return None
    test = pyfuncitem.obj
    kwargs = {name: pyfuncitem.funcargs[name] for name in inspect.signature(test).parameters}
    deadline = time.monotonic() + share
    while True:
        test(**kwargs)  # one Hypothesis run: ROUND_EXAMPLES examples, a new random seed
        if time.monotonic() >= deadline:
            return True
