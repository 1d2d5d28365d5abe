"""Each check of the oracle must be seen to fail: plant a bug (mutants.MUTANTS) and require
that every check listed for it fails, so that a check that silently stopped checking is
noticed. A mutant not caught by anything listed here would be a gap in the tests."""

import pytest

import oracle_checks
import test_hand_cases
import test_invariants
import test_validation
from mutants import MUTANTS, failures, planted


def _torch():
    for case in oracle_checks.FIXED_CASES:
        oracle_checks.check_against_torch(case)


def _finite_differences():
    for case in oracle_checks.FIXED_CASES:
        oracle_checks.check_finite_differences(case)


def _module(module):
    def run():
        failed = failures(module)
        assert not failed, failed
    return run


CHECKS = {
    "torch": _torch,
    "fd": _finite_differences,
    "hand": _module(test_hand_cases),
    "invariants": _module(test_invariants),
    "validation": _module(test_validation),
}

# Which checks must catch which planted bug (measured, then fixed here).
EXPECTED = {
    "tutorial-biased-var": ["torch", "fd", "hand", "invariants"],
    "tutorial-eps-inside": ["torch", "fd", "hand", "invariants"],
    "tutorial-eval-eps-inside": ["torch"],
    "standard-eps-outside": ["torch", "fd", "hand", "invariants"],
    "running-var-biased": ["torch", "hand", "invariants"],
    "momentum-swapped": ["torch", "hand", "invariants"],
    "eval-stats-returned-as-input": ["invariants", "validation"],
    "bwd-drop-variance-term": ["torch", "fd", "hand"],
    "bwd-drop-mean-term": ["torch", "fd", "hand", "invariants"],
    "bwd-standard-unbiased-k": ["torch", "fd", "hand"],
    "bwd-eval-no-denom": ["torch", "fd"],
    "bwd-bn-weight-grad-undivided": ["torch", "fd", "hand"],
    "bwd-zero-variance-unguarded": ["hand"],
    "conv-grad-x-kernel-not-flipped": ["torch", "fd", "invariants"],
    "conv-padding-one-sided": ["torch", "fd", "hand", "invariants"],
    "conv-dilation-ignored": ["torch", "fd", "hand", "invariants"],
    "conv-groups-overlap": ["torch", "fd", "hand", "invariants"],
    "conv-grad-w-taps-transposed": ["torch", "fd", "invariants"],
    "conv-grad-bias-mean": ["torch", "fd"],
    "conv-writes-into-bias": ["validation"],
    "composite-bwd-forgets-bias": ["torch", "fd"],
    "validation-allows-one-value": ["validation"],
}


def test_every_mutant_has_expectations():
    assert set(EXPECTED) == set(MUTANTS)


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_checks_catch_planted_bug(mutant):
    passed = []
    with planted(*MUTANTS[mutant]):
        for name in EXPECTED[mutant]:
            try:
                CHECKS[name]()
            except Exception:  # noqa: BLE001 - the check failed, as it must
                continue
            passed.append(name)
    assert not passed, f"planted bug {mutant!r} went unnoticed by: {passed}"


def test_unmutated_oracle_passes_every_check():
    for name, check in CHECKS.items():
        check()
