"""Fixtures of the meta tests: a report session of their own, and subprocess runs of
`pytest verify` shared by the report and replay tests (helpers: tests/meta/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.meta.helpers import VARIANT_FILE
from verify import report


@pytest.fixture
def report_session() -> report.ReportSession:
    """A fresh report session for properties run in-process (it overrides the plugin's fixture of
    the same name), so their tallies stay out of the real run's end-of-run table."""
    return report.ReportSession()


@pytest.fixture(scope="session")
def variant_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("variants") / "meta_variants.py"
    path.write_text(VARIANT_FILE)
    return path


def _forward_run(tmp_path_factory, variant_file, attr):
    out = tmp_path_factory.mktemp(f"run_{attr.lower()}")
    # The small size tier only: one failing test, hence one report and one replay line.
    proc = run_cli(
        [
            "-m",
            "pytest",
            "verify/test_forward.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "small",
            "--variant",
            f"{variant_file}:{attr}",
            "--verify-repro-dir",
            str(out / "repro"),
            "--verify-summary-json",
            str(out / "summary.json"),
        ]
    )
    return proc, out


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory, variant_file):
    """`pytest verify/test_forward.py --variant FILE:GOOD` (CI profile, 25 examples)."""
    return _forward_run(tmp_path_factory, variant_file, "GOOD")


@pytest.fixture(scope="session")
def failing_run(tmp_path_factory, variant_file):
    """The same with a variant that forgets to subtract the mean."""
    return _forward_run(tmp_path_factory, variant_file, "NO_MEAN")
