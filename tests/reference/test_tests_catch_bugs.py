"""Each check of the oracle must be seen to fail: plant a bug (MUTANTS) and require
that every check listed for it fails, so that a check that silently stopped checking is
noticed. A mutant not caught by anything listed here would be a gap in the tests.

A mutant is one source replacement in one ``reference`` module. ``planted`` executes the
mutated module source and monkeypatches its functions over the originals wherever the package
exposes them; the checks then see the buggy oracle."""

import contextlib
import importlib
import inspect
import itertools
import sys

import pytest

from tests.reference import helpers, test_hand_cases, test_invariants, test_validation


@contextlib.contextmanager
def planted(module_name, old, new):
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    assert source.count(old) == 1, f"mutant text must occur once in {module_name}: {old!r}"
    namespace = {"__name__": module_name, "__package__": "reference", "__file__": module.__file__}
    exec(compile(source.replace(old, new), f"{module.__file__} (mutant)", "exec"), namespace)
    targets = [
        m for name, m in sys.modules.items() if name == "reference" or name.startswith("reference.")
    ]
    with pytest.MonkeyPatch.context() as mp:
        for name, obj in namespace.items():
            original = getattr(module, name, None)
            if not callable(obj) or getattr(original, "__module__", None) != module_name:
                continue
            for target in targets:
                if getattr(target, name, None) is original:
                    mp.setattr(target, name, obj)
        yield


# name: (module, old text, new text, what the bug is)
MUTANTS = {
    "tutorial-biased-var": (
        "reference.batch_norm",
        "denom = np.sqrt(var_unbiased) + eps",
        "denom = np.sqrt(sum_sq / count) + eps",
    ),
    "tutorial-eps-inside": (
        "reference.batch_norm",
        "denom = np.sqrt(var_unbiased) + eps",
        "denom = np.sqrt(var_unbiased + eps)",
    ),
    "tutorial-eval-eps-inside": (
        "reference.batch_norm",
        "denom = np.sqrt(running_var) + eps",
        "denom = np.sqrt(running_var + eps)",
    ),
    "standard-eps-outside": (
        "reference.batch_norm",
        "denom = np.sqrt(sum_sq / count + eps)",
        "denom = np.sqrt(sum_sq / count) + eps",
    ),
    "running-var-biased": (
        "reference.batch_norm",
        "momentum * norm.var_unbiased",
        "momentum * norm.var_unbiased * (norm.values_per_channel - 1) / norm.values_per_channel",
    ),
    "momentum-swapped": (
        "reference.batch_norm",
        "(1 - momentum) * running_mean + momentum * norm.mean",
        "momentum * running_mean + (1 - momentum) * norm.mean",
    ),
    "eval-stats-returned-as-input": (
        "reference.batch_norm",
        "return out, running_mean.copy(), running_var.copy()",
        "return out, running_mean, running_var",
    ),
    "bwd-drop-variance-term": (
        "reference.batch_norm",
        "grad_y -= _c(k * proj / norm.denom**2) * norm.centred",
        "pass",
    ),
    "bwd-drop-mean-term": ("reference.batch_norm", "(gh - _c(gh.mean(axis=axes)))", "gh"),
    "bwd-standard-unbiased-k": (
        "reference.batch_norm",
        "k = 1.0 / (m * norm.denom)",
        "k = 1.0 / ((m - 1) * norm.denom)",
    ),
    "bwd-eval-no-denom": (
        "reference.batch_norm",
        "return gh / _c(norm.denom), grad_bn_weight, grad_bn_bias",
        "return gh, grad_bn_weight, grad_bn_bias",
    ),
    "bwd-bn-weight-grad-undivided": (
        "reference.batch_norm",
        "grad_out, norm.centred) / norm.denom",
        "grad_out, norm.centred)",
    ),
    "bwd-zero-variance-unguarded": (
        "reference.batch_norm",
        "k = np.divide(1.0, (m - 1) * std, out=np.zeros_like(std), where=std > 0)",
        "k = 1.0 / ((m - 1) * std)",
    ),
    "conv-grad-x-kernel-not-flipped": (
        "reference.conv",
        "w_flip = w_g[..., ::-1, ::-1]",
        "w_flip = w_g",
    ),
    "conv-padding-one-sided": (
        "reference.conv",
        "out[:, :, ph : ph + h, pw : pw + w] = x",
        "out[:, :, ph : ph + h, 2 * pw : 2 * pw + w] = x",
    ),
    # The mutant texts follow `ruff format`'s layout of reference/conv.py (one stride a line).
    "conv-dilation-ignored": (
        "reference.conv",
        "s_h * dilation[0],\n            s_w * dilation[1],",
        "s_h,\n            s_w,",
    ),
    "conv-groups-overlap": (
        "reference.conv",
        "cg * s_c,\n            s_c,",
        "s_c,\n            s_c,",
    ),
    "conv-grad-w-taps-transposed": (
        "reference.conv",
        '"ngohw,ngchwij->gocij"',
        '"ngohw,ngchwij->gocji"',
    ),
    "conv-grad-bias-mean": (
        "reference.conv",
        "grad_y.sum(axis=(0, 2, 3))",
        "grad_y.mean(axis=(0, 2, 3))",
    ),
    "conv-writes-into-bias": (
        "reference.conv",
        "        y += bias[:, None, None]",
        "        bias *= 1.0\n        y += bias[:, None, None]",
    ),
    "composite-bwd-forgets-bias": (
        "reference.conv_bn",
        "y = conv2d(x, weight, bias, **conv_kw)\n    if grad_out",
        "y = conv2d(x, weight, None, **conv_kw)\n    if grad_out",
    ),
    "validation-allows-one-value": ("reference.validation", "if n * h * w < 2:", "if False:"),
}


def calls_of(module):
    """Every (test function, kwargs) of a test module, expanding @pytest.mark.parametrize."""
    for name, fn in sorted(vars(module).items()):
        if not (name.startswith("test_") and callable(fn)):
            continue
        axes = []
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize":
                names, values = mark.args[0], mark.args[1]
                names = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
                axes.append(
                    [dict(zip(names, v if len(names) > 1 else (v,), strict=True)) for v in values]
                )
        for combo in itertools.product(*axes):
            yield fn, {k: v for d in combo for k, v in d.items()}


def failures(module):
    """Names of the test functions in ``module`` that fail (raise anything) now."""
    failed = []
    for fn, kwargs in calls_of(module):
        try:
            fn(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - any failure counts, warnings included
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            failed.append(fn.__name__)
    return sorted(set(failed))


def _torch():
    for case in helpers.FIXED_CASES:
        helpers.check_against_torch(case)


def _finite_differences():
    for case in helpers.FIXED_CASES:
        helpers.check_finite_differences(case)


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
    for check in CHECKS.values():
        check()
