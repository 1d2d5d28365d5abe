"""Crash and hang isolation: a kernel that segfaults, aborts or hangs fails the property it was
being checked for, with the case in flight and its replay line, and the run goes on.

Mechanism: the tests run in pytest-xdist workers (fresh interpreters started by execnet, never
forked, so CUDA is safe), one worker unless `-n` asks for more. xdist already restarts a worker
that dies and reports the test it was running as failed; this module adds what that report lacks:

* `note_case` (called by `run_example` right after a case is drawn, before the kernel sees it)
  overwrites a small per-worker file with (test, variant, property, case), and re-arms
  faulthandler's watchdog for `--verify-timeout` seconds. The watchdog is a C thread, so it fires
  even while a kernel holds the GIL; it dumps every thread's stack to the worker's fault file and
  ends the worker, which turns a hang into a crash.
* faulthandler writes the stack of a fatal signal (SIGSEGV, SIGABRT, ...) to the same file.
* On the controller, `pytest_handlecrashitem` reads both files and rewrites xdist's one-line
  "worker crashed" report into a failure report (variant, property, case, replay line, repro
  script, the stack at the crash), and counts the failure in the end-of-run table.

The cost is one worker start-up (an interpreter importing torch and collecting) and a file write
per example. `--verify-isolation off`, `-n 0`, `--pdb`, `-s` and benchmark measurements run
in-process instead (no protection)."""

from __future__ import annotations

import faulthandler
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

DEFAULT_TIMEOUT_S = 60.0
# A Triton kernel on Triton's CPU interpreter runs each program instance in Python, 100-1000x
# slower than compiled: a few training steps at the large tier took over 60 s on a busy 2-core
# machine. Its examples get this many times --verify-timeout before they count as a hang.
INTERPRETED_TIMEOUT_FACTOR = 5
# Enough restarts for every property of a few variants to crash; xdist's default (4 per worker)
# guards against workers that crash while starting, which cannot run anything anyway.
DEFAULT_MAX_RESTARTS = 200
VERIFY_DIR = Path(__file__).resolve().parent
_WORKERINPUT_KEY = "convbn_isolation"


# -- worker side --------------------------------------------------------------------------------
class _Worker:
    """What a worker needs to leave a trail: its in-flight file, fault file and time limit."""

    def __init__(self, directory: str, worker_id: str, timeout: float):
        base = Path(directory) / worker_id
        self.timeout = timeout
        self.nodeid = ""
        self.inflight = os.open(f"{base}.case", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.fault = open(f"{base}.fault", "w")  # noqa: SIM115 - lives as long as the worker

    def note(self, record: dict, factor: float = 1) -> None:
        limit = self.timeout * factor
        data = json.dumps(dict(record, limit=limit)).encode()
        # One write into the page cache: it survives the process dying on the next line.
        os.pwrite(self.inflight, data, 0)
        os.ftruncate(self.inflight, len(data))
        if limit > 0:
            faulthandler.dump_traceback_later(limit, exit=True, file=self.fault)

    def idle(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        os.ftruncate(self.inflight, 0)


_worker: list = [None]


def _exit_without_teardown() -> None:
    """End an isolation worker once xdist has handed the controller its last message, which
    waits for the process to end: pytest's unconfigure (two full garbage collections for
    unraisable exceptions, which a worker could no longer report) and the interpreter's teardown
    (destroying every object, 0.7 s for `import torch` alone) were a tenth of a short run's wall
    time. Not when coverage is measuring, which saves its data at exit."""
    if "coverage" in sys.modules:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


def note_case(
    variant_name: str, prop_name: str, case, tier: str = "small", *, interpreted: bool = False
) -> None:
    """Record the case about to be run, so that a crash or hang can be reported with it; a
    kernel on Triton's CPU interpreter (`interpreted`) gets INTERPRETED_TIMEOUT_FACTOR times the
    time limit."""
    worker = _worker[0]
    if worker is not None:
        worker.note(
            {
                "nodeid": worker.nodeid,
                "variant": variant_name,
                "property": prop_name,
                "tier": tier,
                "case": case.to_json(),
            },
            INTERPRETED_TIMEOUT_FACTOR if interpreted else 1,
        )


# -- options and the decision to isolate ---------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("convbn-verify")
    group.addoption(
        "--verify-isolation",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): run the suite's tests in a pytest-xdist worker process "
        "(one unless -n says more), so that a kernel that crashes or hangs "
        "fails its property and the run goes on; off: run in-process",
    )
    group.addoption(
        "--verify-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="per-example time limit under isolation; a kernel still running after "
        "it fails as a hang (default %(default)s; 0 disables)",
    )


def why_not_isolated(config) -> str | None:
    """None when this run should isolate; otherwise the reason it runs in-process."""
    if config.getoption("verify_isolation") == "off":
        return "--verify-isolation off"
    if not config.pluginmanager.hasplugin("xdist"):
        return "pytest-xdist is not installed or is disabled (-p no:xdist)"
    if config.getoption("numprocesses", None) == 0:
        return "-n 0"
    if config.getoption("usepdb", False):
        return "--pdb"
    if config.getoption("capture", "fd") == "no":
        return "-s / --capture=no"
    if config.getoption("collectonly", False):
        return "--collect-only"
    from verify.benchmarks.plugin import measuring_requested

    if measuring_requested(config):
        return "benchmarks are measured (they must run in-process, without xdist)"
    if not runs_only_the_suite(config):
        return "the run includes tests outside the verify package"
    return None


def runs_only_the_suite(config) -> bool:
    """Whether every test path of the command line lies in the verify package: tests of the tools
    (tests/) are left as they are."""
    import importlib.util

    targets = []
    for arg in config.args:
        name = arg.split("::")[0]
        path = Path(config.invocation_params.dir, name)
        if not path.exists() and config.getoption("pyargs", False):
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is None or spec.origin is None:
                return False
            path = Path(spec.origin)
        targets.append(path.resolve())
    return bool(targets) and all(t == VERIFY_DIR or VERIFY_DIR in t.parents for t in targets)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        settings = worker_input.get(_WORKERINPUT_KEY)
        if settings:
            _worker[0] = _Worker(settings["dir"], worker_input["workerid"], settings["timeout"])
        return
    distributing = config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))
    if distributing and runs_only_the_suite(config):
        config.pluginmanager.register(_MaxfailIsAFailure(), "convbn-maxfail-exit")
    if not distributing:
        if why_not_isolated(config) is not None:
            return
        config.pluginmanager.register(_MaxfailIsAFailure(), "convbn-maxfail-exit")
        # What `-n 1` does (xdist's own pytest_cmdline_main has run by now); xdist's
        # pytest_configure (trylast) creates the distributed session from these.
        config.option.numprocesses = 1
        config.option.dist = "load"
        config.option.tx = ["popen"]
    elif config.getoption("verify_isolation") == "off" or not runs_only_the_suite(config):
        return  # -n given by hand for other tests: plain xdist
    if config.getoption("maxworkerrestart", None) is None:
        config.option.maxworkerrestart = str(DEFAULT_MAX_RESTARTS)
    config.pluginmanager.register(_Controller(config), "convbn-isolation-controller")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    worker = _worker[0]
    if worker is None:
        yield
        return
    worker.nodeid = item.nodeid
    # pytest's faulthandler plugin points faulthandler at stderr when it configures; a fatal
    # signal's stack belongs in the fault file the controller reads.
    faulthandler.enable(file=worker.fault, all_threads=True)
    try:
        yield
    finally:
        worker.idle()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    # tryfirst: around xdist's wrapper (not tryfirst), which sends "workerfinished", the worker's
    # last message, once the implementations inside it have run.
    result = yield
    if _worker[0] is not None:
        _exit_without_teardown()
    return result


# -- controller side ------------------------------------------------------------------------------
class _MaxfailIsAFailure:
    """Exit 1, as pytest's own `-x` / `--maxfail` does, when the suite stops after a found bug.

    xdist's controller stops a run that reached maxfail by raising its `Interrupted` (a
    KeyboardInterrupt), which pytest turns into exit status 2, "interrupted", and CI scripts and
    `git bisect run` read as "could not test". Only that stop is turned into pytest's `Failed`;
    a worker's keyboard interrupt or Ctrl-C on the controller still exits 2."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session):
        try:
            return (yield)
        except KeyboardInterrupt as stop:
            reason = _maxfail_reached(session.config, stop)
            if reason is None:
                raise
            session.shouldfail = reason
            raise session.Failed(reason) from None


def _maxfail_reached(config, stop: BaseException) -> str | None:
    """xdist's reason for `stop` when it is the maxfail stop, else None."""
    dsession = config.pluginmanager.getplugin("dsession")
    if dsession is None or type(stop).__name__ != "Interrupted":
        return None
    maxfail, failures = getattr(dsession, "maxfail", 0), getattr(dsession, "countfailures", 0)
    reason = str(stop)
    # A worker that stops on its own maxfail hands over the same reason, counted by itself.
    if maxfail and failures >= maxfail and reason.startswith("stopping after "):
        return reason
    return None


class _Controller:
    """xdist hooks of the controller: hand workers their files, turn crashes into reports."""

    def __init__(self, config):
        self.config = config
        self.directory = tempfile.mkdtemp(prefix="convbn-isolation-")
        self.timeout = config.getoption("verify_timeout")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput[_WORKERINPUT_KEY] = {"dir": self.directory, "timeout": self.timeout}

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        worker_id = report.node.gateway.id
        base = Path(self.directory) / worker_id
        inflight = _read_json(Path(f"{base}.case"))
        fault = _read_text(Path(f"{base}.fault"))
        # xdist names the crashed test by its file only; pytest titles the report by this.
        fspath, _, name = crashitem.partition("::")
        report.location = (fspath, None, name or fspath)
        report.when = "call"  # a failure of the test (JUnit: <failure>), not of its setup
        if inflight and inflight.get("nodeid") == crashitem:
            report.longrepr = self._crash_report(inflight, fault)
        elif fault:
            report.longrepr = (
                f"the test process crashed while running {crashitem} outside any "
                f"example of a property:\n{_excerpt(fault)}"
            )

    def _crash_report(self, inflight: dict, fault: str) -> str:
        from verify.case import Case
        from verify.report import verify_session

        session = verify_session(self.config)
        variant_name, prop = inflight["variant"], inflight["property"]
        case = Case.from_json(inflight["case"])
        session.record(
            variant_name, prop, math.inf, case, failed=True, tier=inflight.get("tier", "small")
        )
        session.write_repro(variant_name, prop, case)
        if fault.startswith("Timeout ("):
            limit = inflight.get("limit", self.timeout)
            why = (
                "--verify-timeout"
                if limit == self.timeout
                else f"--verify-timeout x {INTERPRETED_TIMEOUT_FACTOR} on Triton's CPU interpreter"
            )
            headline = (
                f"variant {variant_name!r} hangs on property {prop!r}: no result after "
                f"{limit:g} s ({why}); the test process was ended"
            )
        else:
            what = _fatal_error(fault) or "the test process died without a Python error"
            headline = f"variant {variant_name!r} crashes on property {prop!r}: {what}"
        details = ["the stack when it happened (faulthandler):"]
        details += ["  " + line for line in _excerpt(fault).splitlines()] if fault else ["  (none)"]
        return session.report_text(variant_name, prop, case, details, headline=headline)

    def pytest_unconfigure(self, config):
        shutil.rmtree(self.directory, ignore_errors=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _fatal_error(fault: str) -> str:
    for line in fault.splitlines():
        if line.startswith("Fatal Python error:"):
            return line
    return ""


def _excerpt(fault: str, frames: int = 12) -> str:
    """The header and the innermost frames of the thread that ran the test (faulthandler prints
    each thread's stack most recent call first)."""
    lines = fault.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(("Current thread", "Thread 0x"))]
    header = [line for line in lines[: starts[0] if starts else len(lines)] if line.strip()]
    blocks = []
    for begin, end in zip(starts, starts[1:] + [len(lines)], strict=True):
        blocks.append([line for line in lines[begin:end] if line.strip()])
    chosen = next((b for b in blocks if b[0].startswith("Current thread")), None)
    chosen = chosen or next((b for b in blocks if any("verify" in line for line in b)), None)
    chosen = chosen or (blocks[0] if blocks else [])
    return "\n".join(header + chosen[: frames + 1])
