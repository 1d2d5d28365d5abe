"""pytest plugin of the verification suite: --variant, parametrisation over variants, skips for
absent hardware and long hunts, short failure reports, and the end-of-run table (merged across
pytest-xdist workers).

Registered by the package's `pytest11` entry point (so `pytest --pyargs verify` works wherever
the package is installed) and by the checkout's root conftest under the same name (registered
once). It brings in crash/hang isolation (verify.isolation) and campaigns (verify.campaign)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from verify import report
from verify.assert_rewriting import leave_unrewritten

pytest_plugins = ["verify.isolation", "verify.campaign"]

MARKERS = (
    "cuda: needs a CUDA device; skipped cleanly without one",
    "fuzz: long hunts (thousands of examples); skipped unless --run-fuzz or CONVBN_FUZZ=1",
    "slow: slower checks of the tools themselves; skipped unless --run-slow",
    "gallery: runs the planted-bug gallery through `pytest verify --variant`",
)
# The oracle's overflow/invalid warnings are errors, as in the checkout's pytest configuration.
FILTERWARNINGS = ("error::RuntimeWarning:reference.*",)
VERIFY_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("convbn-verify")
    group.addoption(
        "--variant",
        action="append",
        default=None,
        metavar="SPEC",
        help="kernel variant(s) to verify instead of the built-in ones: "
        "package.module:attr or path/to/file.py:attr (a Variant or a list); "
        "repeatable",
    )
    group.addoption(
        "--verify-repro-dir",
        default=None,
        metavar="DIR",
        help="write a standalone repro script for every property failure into DIR",
    )
    group.addoption(
        "--verify-summary-json",
        default=None,
        metavar="PATH",
        help="write the end-of-run table (per variant and property: examples, "
        "failures, worst error / bound) as JSON to PATH",
    )
    group.addoption(
        "--verify-accept-upstream",
        action="store_true",
        default=False,
        help="a test whose every finding PyTorch's own F.conv2d + F.batch_norm shares "
        "(labelled upstream) counts as xfailed, not failed: the run exits 0 on upstream-only "
        "findings, while every finding of the kernel's own still fails",
    )
    group.addoption(
        "--run-fuzz",
        action="store_true",
        default=False,
        help="run tests marked `fuzz` (also CONVBN_FUZZ=1)",
    )
    group.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="run tests marked `slow` (also CONVBN_SLOW=1)",
    )
    group.addoption(
        "--triton-interpret",
        action="store_true",
        default=False,
        help="run Triton kernels on Triton's CPU interpreter (TRITON_INTERPRET=1) "
        "even where a GPU is available; without a GPU this is the default",
    )


def _setup_triton_interpreter(config):
    """Triton picks compiled or interpreted kernels when a kernel module is imported, so decide
    before any variant (built-in or --variant) is: the interpreter without a CUDA device or with
    --triton-interpret; an explicit TRITON_INTERPRET in the environment is kept otherwise."""
    from fused.triton_support import configure_interpreter

    configure_interpreter(force=config.getoption("--triton-interpret"))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    # Before Hypothesis and the suite's modules are imported (nothing this plugin loads at import
    # time imports them), and only in a run of the suite: other sessions keep pytest's marks.
    from verify.isolation import runs_only_the_suite

    if runs_only_the_suite(config):
        leave_unrewritten()
    import verify.profiles  # noqa: F401 - registers and selects the Hypothesis profiles


def pytest_configure(config):
    _setup_triton_interpreter(config)
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    for line in FILTERWARNINGS:
        config.addinivalue_line("filterwarnings", line)
    # The run's report state lives on the config (as pytest-benchmark keeps its session), never
    # in module globals: each xdist worker has its own, the controller merges their rows.
    session = report.ReportSession(repro_dir=config.getoption("--verify-repro-dir"))
    config.stash[report.SESSION_KEY] = session
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_TallyCollector(session), "convbn-tally-collector")
    config._convbn_variants = None
    if config.getoption("--variant"):
        _variants(config)  # a bad SPEC is one usage error now, not one error per test module


@pytest.fixture
def report_session(request) -> report.ReportSession:
    """The run's `ReportSession`, for `verify.hunt.hunt` (every verify/test_*.py)."""
    return report.verify_session(request.config)


def pytest_collect_file(file_path, parent):
    """Collect the suite's benchmark files (bench_*.py) where the ini's python_files does not
    name them: an installed package run from elsewhere has no ini of ours."""
    if not (fnmatch.fnmatch(file_path.name, "bench_*.py") and VERIFY_DIR in file_path.parents):
        return None
    if any(fnmatch.fnmatch(file_path.name, p) for p in parent.config.getini("python_files")):
        return None  # pytest's python plugin collects it already
    # A test file, rewritten like the ones python_files names (verify.assert_rewriting unmarks
    # the package they live in).
    module = ".".join(("verify", *file_path.relative_to(VERIFY_DIR).with_suffix("").parts))
    parent.config.pluginmanager.rewrite_hook.mark_rewrite(module)
    return pytest.Module.from_parent(parent, path=file_path)


def _variants(config):
    if config._convbn_variants is None:
        from verify.specs import VariantSpecError, load_all

        try:
            loaded = load_all(config.getoption("--variant"))
        except VariantSpecError as error:
            raise pytest.UsageError(str(error)) from None
        report.verify_session(config).variant_specs.update({v.name: spec for spec, v in loaded})
        config._convbn_variants = [v for _, v in loaded]
    return config._convbn_variants


def pytest_generate_tests(metafunc):
    if "variant" not in metafunc.fixturenames or _parametrizes_variant_itself(metafunc):
        return
    prop = getattr(metafunc.module, "PROPERTY", None)
    params = []
    for v in _variants(metafunc.config):
        reason = _not_applicable(prop, v)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(v, id=v.name, marks=marks))
    metafunc.parametrize("variant", params)
    if "tier" in metafunc.fixturenames:
        metafunc.parametrize("tier", list(prop.SIZE_TIERS))


def _parametrizes_variant_itself(metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "variant" in names:
            return True
    return False


def _not_applicable(prop, variant) -> str | None:
    if getattr(variant, "unavailable", ""):
        return f"variant {variant.name!r} is unavailable: {variant.unavailable}"
    if prop is None:
        return None
    if prop.NAME == "cuda":
        from verify.properties.cuda import cuda_available

        if not cuda_available():
            return "no CUDA device"
        if "cuda" not in variant.supports:
            return f"variant {variant.name!r} does not declare 'cuda'"
    if prop.strategy(variant) is None:
        return f"property {prop.NAME!r} applies to {prop.APPLIES_TO}, not to {variant.name!r}"
    return None


def _run_order(item) -> int:
    """Property tests in `PROPERTIES` order (numeric ones first); everything else after."""
    from verify.properties import PROPERTIES

    prop = getattr(getattr(item, "module", None), "PROPERTY", None)
    names = list(PROPERTIES)
    return names.index(prop.NAME) if prop is not None and prop.NAME in names else len(names)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_run_order)  # stable: variants and tiers keep their order within a property
    run_fuzz = config.getoption("--run-fuzz") or os.environ.get("CONVBN_FUZZ") == "1"
    run_slow = config.getoption("--run-slow") or os.environ.get("CONVBN_SLOW") == "1"
    for item in items:
        if "fuzz" in item.keywords and not run_fuzz:
            item.add_marker(pytest.mark.skip(reason="long hunt: use --run-fuzz"))
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: use --run-slow"))
        if "cuda" in item.keywords:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    session = report.verify_session(item.config)
    if call.when == "call" and rep.failed:
        session.write_last_repro()
        accepted = call.excinfo is not None and _judge_upstream(item, call.excinfo.value, session)
        if call.excinfo is not None and item.config.getoption("tbstyle") in ("auto", "short"):
            from verify.failures import pytest_report

            rep.longrepr = pytest_report(call.excinfo.value) or rep.longrepr
        if accepted and item.config.getoption("--verify-accept-upstream"):
            rep.outcome = "skipped"  # what pytest makes of an xfail
            rep.wasxfail = f"upstream (PyTorch's own ops fail it the same way): {accepted}"
    if call.when == "teardown" and hasattr(item.config, "workerinput"):
        # Each test's tallies ride on its last report to the xdist controller, so a worker that
        # dies later loses nothing already reported.
        rep.convbn_tallies = session.take_unsent_rows()


def _judge_upstream(item, error: BaseException, session: report.ReportSession) -> str:
    """Label the test's findings that PyTorch's own ops share (verify.upstream) in their reports
    and the tally; the bug labels when every finding of the test is upstream, else ""."""
    from verify.failures import property_failures

    prop = getattr(getattr(item, "module", None), "PROPERTY", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    variant, failures = params.get("variant"), property_failures(error)
    if prop is None or variant is None or not failures:
        return ""
    from verify import upstream

    labels = []
    for failure in failures:  # the minimal examples Hypothesis ended with: one replay each
        verdict = upstream.judge(variant, prop, failure.case)
        if verdict is None:
            continue
        failure.details += verdict.report_lines(failure)
        failure.headline = verdict.headline(failure)
        session.complete(failure)
        labels.append(verdict.label)
    if len(labels) < len(failures):
        return ""  # a finding of the kernel's own: the test is the kernel's failure
    label = ", ".join(sorted(set(labels)))
    session.mark_upstream(variant.name, prop.NAME, params.get("tier", "small"), label)
    return label


class _TallyCollector:
    """On the xdist controller: add the tallies each worker's reports carry."""

    def __init__(self, session: report.ReportSession):
        self.session = session

    def pytest_runtest_logreport(self, report):
        self.session.merge_rows(getattr(report, "convbn_tallies", None) or [])


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):
        return
    session = report.verify_session(config)
    path = config.getoption("--verify-summary-json")
    if path:
        session.write_summary_json(path)
    lines = session.summary_lines()
    if lines:
        terminalreporter.section("convbn-verify: examples and worst error / bound")
        for line in lines + _limitation_lines(config, session):
            terminalreporter.write_line(line)
        if any(t.upstream for t in session.tallies.values()):
            accepted = config.getoption("--verify-accept-upstream")
            terminalreporter.write_line(
                "upstream: PyTorch's own F.conv2d + F.batch_norm fails those cases the same way "
                "(known PyTorch bugs: docs/upstream-bugs.md); "
                + (
                    "accepted (--verify-accept-upstream)"
                    if accepted
                    else "they fail the run unless --verify-accept-upstream is given"
                )
            )


def _limitation_lines(config, session: report.ReportSession) -> list[str]:
    """What the variants of this run declare they cannot do, and what the suite held them to
    instead: a pass with a declared limitation is not a pass without one."""
    from fused.variant import LIMITATIONS

    ran = {key.variant for key in session.tallies}
    # The variants this process has loaded: --variant's (loaded at configure, on the xdist
    # controller too); the built-ins declare none, and loading them here would import torch and
    # triton on the controller only to print nothing.
    lines = [
        f"variant {v.name!r} declares limitation {name!r}: {LIMITATIONS[name]} (checked by "
        "'programs')"
        for v in config._convbn_variants or ()
        if v.name in ran
        for name in sorted(v.limitations)
    ]
    return [""] + lines if lines else []
