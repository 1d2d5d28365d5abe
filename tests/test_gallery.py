"""Proof that `pytest verify` works: every planted bug of tests/gallery/ is caught by the property
that should catch it, for the right reason; the published tutorial fails exactly the properties its
maths says it must; the correct implementations pass everything.

One subprocess runs the whole suite on all gallery variants at once (module-scoped fixture), with
CI=1, two isolated xdist workers of one intra-op thread each, and the `gallery` Hypothesis profile
(tests/gallery/profiles.py: the `ci` profile's derandomised examples, without the shrink phase);
the tests below read its summary JSON (which properties failed) and JUnit XML (the failure
reports, matched against the reason each bug was planted for). Every failure the `ci` profile
finds is found the same way (generation is identical); skipping the shrinking of ~200 failures of
45 wrong kernels at five size tiers is what keeps this inside CI's budget (the shrinking itself is
tested in tests/meta). CONVBN_GALLERY_PROFILE=ci shrinks them too; the reasons are written to hold
for shrunk and unshrunk reports.

`test_no_false_alarms_under_fuzz` (marked fuzz: --run-fuzz or CONVBN_FUZZ=1) runs the correct
variants and the built-in ones under the `fuzz` profile and requires zero failures;
CONVBN_FUZZ_EXAMPLES=N shortens it to N examples per property.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest

from tests.gallery import bugs
from tests.gallery._correct import CORRECT
from tests.gallery.tutorial_published import PUBLISHED, PUBLISHED_EXPECTED
from tests.helpers import cli_env, run_cli

BUGS_SPEC = "tests/gallery/bugs.py:ALL"
PUBLISHED_SPEC = "tests/gallery/tutorial_published.py:PUBLISHED"
CORRECT_SPEC = "tests.gallery._correct:CORRECT"
TIMEOUT_S = 1800

# Properties the gallery's variants can be checked for on a CPU-only machine.
CPU_PROPERTIES = (
    "forward",
    "gradients",
    "running_stats",
    "grad_mode",
    "determinism",
    "shift_invariance",
    "no_mutation",
    "programs",
    "finite_differences",
    "gradcheck",
    "second_order",
    "saved_memory",
    "bad_inputs",
)


def _run_suite(tmp: Path, specs: list[str], profile: str, extra: list[str] = (), env_extra=None):
    summary, junit = tmp / "summary.json", tmp / "junit.xml"
    command = [
        "-m",
        "pytest",
        "verify",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.gallery.profiles",
        "--hypothesis-profile",
        profile,
        "--benchmark-skip",
        "-q",
        "--no-header",
        "-rN",
        # Two isolated workers (the suite's crash isolation): both cores of a CI machine.
        "-n",
        os.environ.get("CONVBN_GALLERY_WORKERS", "2"),
        f"--verify-summary-json={summary}",
        f"--junitxml={junit}",
        *extra,
    ]
    for spec in specs:
        command += ["--variant", spec]
    # One intra-op thread: the tensors are tiny, and on a busy 2-core machine two OpenMP threads
    # make every conv ~100x slower (spinning), which turns minutes into tens of minutes.
    env = cli_env(
        OMP_NUM_THREADS=os.environ.get("CONVBN_GALLERY_THREADS", "1"),
        CONVBN_FUZZ=None,
        **(env_extra or {}),
    )
    done = run_cli(command, env=env, timeout=TIMEOUT_S)
    output = done.stdout
    (tmp / "output.txt").write_text(output)
    if done.returncode not in (0, 1) or not summary.exists():
        pytest.fail(
            f"`pytest verify` exited {done.returncode} (a crash, not a verdict):\n{output[-6000:]}",
            pytrace=False,
        )
    return done.returncode, output, _summary(summary), _junit(junit)


def _summary(path: Path) -> dict:
    """(variant, property) -> the suite's summary JSON rows summed over size tiers: examples,
    failures, worst_ratio (None for inf), and `tiers`, each tier's own row."""
    merged = {}
    for row in json.loads(path.read_text()):
        key = (row["variant"], row["property"])
        into = merged.setdefault(key, dict(examples=0, failures=0, worst_ratio=0.0, tiers={}))
        into["examples"] += row["examples"]
        into["failures"] += row["failures"]
        into["tiers"][row.get("tier", "small")] = row
        if into["worst_ratio"] is not None:
            ratio = row["worst_ratio"]
            into["worst_ratio"] = None if ratio is None else max(into["worst_ratio"], ratio)
    return merged


def _strip(text: str) -> str:
    # Failure reports in JUnit carry pytest's "E   " and Hypothesis' "  | " prefixes: drop them so
    # the reasons can be matched line by line.
    lines = (re.sub(r"^(E\s+|\s*\|\s*|\s+)", "", line) for line in text.splitlines())
    return "\n".join(lines)


def _junit(path: Path) -> dict:
    """(variant, property) -> (outcome, failure text) from the JUnit XML."""
    results = {}
    from verify.strategies.sizes import ALL_TIERS

    tier_suffix = "-(" + "|".join(ALL_TIERS) + ")"
    for case in ET.parse(path).iter("testcase"):
        match = re.fullmatch(r"test_(\w+)\[(.+?)(?:" + tier_suffix + r")?\]", case.get("name", ""))
        if not match:
            continue
        prop, variant = match.group(1), match.group(2)
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                text = _strip((element.get("message") or "") + "\n" + (element.text or ""))
                break
        previous = results.get((variant, prop))
        # One test per size tier: a property failed for a variant if any tier failed.
        if previous is None or previous[0] in ("passed", "skipped"):
            results[(variant, prop)] = (outcome, text)
    return results


class Run:
    def __init__(self, returncode, output, summary, junit):
        self.returncode, self.output, self.summary, self.junit = returncode, output, summary, junit

    def failed(self, variant: str) -> set:
        """Properties the variant broke (summary failures or a failed/errored test)."""
        props = {p for (v, p), row in self.summary.items() if v == variant and row["failures"]}
        props |= {
            p
            for (v, p), (outcome, _) in self.junit.items()
            if v == variant and outcome in ("failed", "error")
        }
        return props

    def ran(self, variant: str) -> set:
        return {
            p
            for (v, p), (outcome, _) in self.junit.items()
            if v == variant and outcome != "skipped"
        }

    def report(self, variant: str, prop: str) -> str:
        return self.junit.get((variant, prop), ("", ""))[1]

    def examples(self, variant: str, prop: str) -> int:
        row = self.summary.get((variant, prop))
        return row["examples"] if row else 0


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Run:
    profile = os.environ.get("CONVBN_GALLERY_PROFILE", "gallery")
    tmp = tmp_path_factory.mktemp("gallery")
    return Run(*_run_suite(tmp, [BUGS_SPEC, PUBLISHED_SPEC, CORRECT_SPEC], profile))


def _bug_params():
    for variant in bugs.ALL:
        gap = bugs.KNOWN_GAPS.get(variant.name)
        marks = [pytest.mark.xfail(strict=True, reason=f"gap in the suite: {gap}")] if gap else []
        yield pytest.param(variant.name, id=variant.name, marks=marks)


@pytest.mark.gallery
@pytest.mark.parametrize("name", list(_bug_params()))
def test_bug_is_caught(gallery, name):
    failed = gallery.failed(name)
    # A key "a|b" is met by whichever of those properties caught the bug for the reason.
    expected = {
        _catcher(gallery, name, key, reason, failed): reason
        for key, reason in bugs.EXPECTED[name].items()
    }
    print(
        f"{name}: expected {sorted(expected)}; failed {sorted(failed)}; "
        f"also failed {sorted(failed - set(expected))}"
    )
    missed = sorted(set(expected) - failed)
    assert not missed, (
        f"{name}: the suite did not catch the bug with {missed} "
        f"(properties that failed: {sorted(failed)})"
    )
    _check_reasons(gallery, name, expected)
    wrongly = sorted(set(bugs.MUST_PASS.get(name, ())) & failed)
    assert not wrongly, f"{name}: its bug is elsewhere, yet it failed {wrongly}"
    for prop, least in bugs.MARGINS.get(name, {}).items():
        worst = gallery.summary[(name, prop)]["worst_ratio"]
        assert worst is None or worst >= least, (
            f"{name} fails {prop} by only {worst:.3g}x the bound (want >= {least}x)"
        )


def _catcher(gallery, name: str, key: str, reason: str, failed: set) -> str:
    """The property named by `key` ("forward", or "forward|gradients": any of them) that failed
    for `reason`; the first one named when none did (the assertions then say why)."""
    props = key.split("|")
    return next(
        (p for p in props if p in failed and re.search(reason, gallery.report(name, p))), props[0]
    )


def _check_reasons(gallery, name, reasons: dict) -> None:
    """Each property's failure report must match its reason: the bug was caught for the reason it
    was planted, not by a crash elsewhere (of the kernel or of the suite)."""
    wrong = [
        f"--- {prop}: report does not match {reason!r}:\n{gallery.report(name, prop)[:3000]}"
        for prop, reason in reasons.items()
        if not re.search(reason, gallery.report(name, prop))
    ]
    assert not wrong, f"{name}: caught for the wrong reason\n" + "\n".join(wrong)


@pytest.mark.gallery
def test_published_tutorial_fails_exactly_its_expected_properties(gallery):
    name = PUBLISHED.name
    failed = gallery.failed(name)
    print(
        f"{name}: expected {sorted(PUBLISHED_EXPECTED)}; failed {sorted(failed)}; "
        f"ran {sorted(gallery.ran(name))}"
    )
    assert failed == set(PUBLISHED_EXPECTED), (
        f"{name} failed {sorted(failed)}, expected exactly {sorted(PUBLISHED_EXPECTED)}"
    )
    # It must pass the others it can be checked for; one that never ran would prove nothing.
    for prop in sorted(set(CPU_PROPERTIES) - set(PUBLISHED_EXPECTED) - {"running_stats"}):
        assert gallery.examples(name, prop) > 0, f"{name}: property {prop} never ran"
    reasons = {
        "gradients": r"grad_\w+: worst element .* actual nan",
        "determinism": r"grad_\w+: worst element .* actual nan",
        "programs": r"grad_\w+: worst element .* actual nan",
        "bad_inputs": r"scenario 'single_value_per_channel': no exception; returned NaN",
        "second_order": r"gradgradcheck failed",
    }
    _check_reasons(gallery, name, reasons)


@pytest.mark.gallery
@pytest.mark.parametrize("name", [v.name for v in CORRECT])
def test_correct_variant_passes_everything(gallery, name):
    failed = gallery.failed(name)
    details = "\n".join(gallery.report(name, p)[:3000] for p in sorted(failed))
    assert not failed, f"false alarm: correct variant {name} failed {sorted(failed)}\n{details}"
    ran = gallery.ran(name)
    assert {"forward", "gradients", "gradcheck", "running_stats", "bad_inputs"} <= ran, ran


@pytest.mark.gallery
def test_every_variant_ran_every_cpu_property(gallery):
    """No property was silently skipped for a gallery variant (features declared honestly)."""
    for variant in bugs.ALL + CORRECT:
        wanted = set(CPU_PROPERTIES) - ({"saved_memory"} if not variant.memory_saving else set())
        ran = gallery.ran(variant.name)
        assert wanted <= ran, (variant.name, sorted(wanted - ran))


@pytest.mark.fuzz
def test_no_false_alarms_under_fuzz(tmp_path):
    """Correct variants (ours and the built-in ones) under the fuzz profile: zero failures."""
    examples = os.environ.get("CONVBN_FUZZ_EXAMPLES")
    profile = "gallery_fuzz" if examples else "fuzz"
    returncode, output, summary, junit = _run_suite(
        tmp_path, [CORRECT_SPEC, "fused.registry:BUILTIN_VARIANTS"], profile
    )
    failures = [row for row in summary.values() if row["failures"]]
    broken = [key for key, (outcome, _) in junit.items() if outcome in ("failed", "error")]
    counts = defaultdict(int)
    for (variant, _), row in summary.items():
        counts[variant] += row["examples"]
    print(f"examples per variant: {dict(counts)}")
    assert returncode == 0 and not failures and not broken, (
        f"false alarms under the fuzz profile: {failures or broken}\n{output[-8000:]}"
    )
