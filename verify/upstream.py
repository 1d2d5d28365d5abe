"""Whose bug is it: a finding that PyTorch's own ops share is labelled upstream.

When a standard-form variant fails a property on a case, `judge` replays that case on PyTorch's
own composite with the same semantics (`F.conv2d` then `F.batch_norm`, `PYTORCH_CONV_BN`) and
decides whether PyTorch fails it the same way. A finding is upstream only when both hold:

1. PyTorch's composite fails the same property on the same case (same check, same bounds);
2. on that case, one call of the kernel and one of the composite (with backward unless the
   property checks the forward only) agree output by output within the property's bounds, with
   NaN and infinities in the same places, and are wrong (against the oracle) in the same outputs.
   Where both raise, the same exception type in the same stage (forward/backward) counts.

So a kernel wrong in another way on the same case is the kernel's own finding. The tutorial form
has no PyTorch op: its findings are never upstream (a plain-ops composite gives NaN at zero
variance, which is the published tutorial's own bug). Properties about the kernel's own design
(`NOT_JUDGED`) are never replayed. Only failing cases are replayed, once per failed test (the
minimal example), so passing examples cost nothing.

`KNOWN_BUGS` lists the PyTorch bugs the suite has found, each with a standalone repro script in
docs/upstream/<id>.py (docs/upstream-bugs.md; tests/meta/test_upstream.py runs every repro and
notices when a PyTorch upgrade fixes one). A known bug explains a finding when its workaround,
applied to PyTorch's composite, makes the property pass on the case."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from fused.variant import FEATURES, Variant
from verify import error_bounds, oracle, runner
from verify.dtypes import largest_finite
from verify.oracle_comparison import compare
from verify.report import PropertyFailure

PYTORCH_VERSION = torch.__version__
PYTORCH_SPEC = "verify.upstream:PYTORCH_CONV_BN"
# The kernel's own design, not a computation PyTorch's composite shares: saving memory, its own
# custom ops, the contract's validation of bad arguments.
NOT_JUDGED = frozenset({"saved_memory", "opcheck", "bad_inputs"})
# Properties whose check calls the kernel without backward.
FORWARD_ONLY = frozenset({"forward", "grad_mode"})


def _composite(prepare_bn_weight: Callable = lambda t: t) -> Callable:
    def pytorch_conv_bn(
        x,
        weight,
        bias=None,
        bn_weight=None,
        bn_bias=None,
        running_mean=None,
        running_var=None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        training=True,
        momentum=0.1,
        eps=1e-3,
    ):
        y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        if bn_weight is not None:
            bn_weight = prepare_bn_weight(bn_weight)
        return F.batch_norm(
            y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps
        )

    return pytorch_conv_bn


# PyTorch's own ops, as they are: what a kernel's finding is replayed on. PyTorch's CPU ops are
# deterministic, so it does not declare "nondeterministic".
PYTORCH_CONV_BN = Variant(
    "pytorch_conv_bn",
    _composite(),
    form="standard",
    supports=FEATURES - {"nondeterministic"},
)


@dataclass(frozen=True)
class KnownBug:
    """A PyTorch bug the suite has found. `applies` is a cheap filter on the case; `fixed`
    prepares bn_weight as the workaround does, where the suite can apply it (None: the bug is
    documented and its repro kept honest, but no finding is matched to it)."""

    id: str
    title: str
    observed: tuple[str, ...]  # PyTorch versions where its repro showed it
    workaround: str
    applies: Callable | None = None
    fixed: Callable | None = None

    @property
    def repro(self) -> str:
        return f"docs/upstream/{self.id}.py"


KNOWN_BUGS = (
    KnownBug(
        id="cpu-batch-norm-strided-weight",
        title="CPU F.batch_norm backward reads a strided (non-contiguous) weight as if it were "
        "contiguous: NaN or wrong grad_x (and so grad_weight of the conv) on its channels-last "
        "path (input and grad_out channels-last-contiguous, e.g. 1x1 spatial)",
        observed=("2.13.0",),
        workaround="pass bn_weight.contiguous() to F.batch_norm",
        applies=lambda case: case.affine and case.layout == "strided" and case.device == "cpu",
        fixed=lambda t: t.contiguous(),
    ),
)


@dataclass(frozen=True)
class Upstream:
    """The verdict: PyTorch fails this case of this property the same way; `bug` where known."""

    prop: str
    bug: KnownBug | None = None
    pytorch: str = PYTORCH_VERSION

    @property
    def label(self) -> str:
        return self.bug.id if self.bug is not None else "unlisted"

    def headline(self, failure: PropertyFailure) -> str:
        return (
            f"variant {failure.variant_name!r} breaks property {failure.prop!r} "
            f"[upstream: PyTorch {self.pytorch} fails it the same way]"
        )

    def report_lines(self, failure: PropertyFailure) -> list[str]:
        from verify.report import replay_command

        lines = [
            f"upstream: PyTorch {self.pytorch}'s own F.conv2d + F.batch_norm fails this case "
            "the same way (same outputs wrong, within the bounds of the kernel's result)",
        ]
        if self.bug is not None:
            lines += [
                f"  known PyTorch bug {self.bug.id}: {self.bug.title}",
                f"  workaround: {self.bug.workaround}",
                f"  standalone repro: {self.bug.repro} in convbn-verify (docs/upstream-bugs.md)",
            ]
        else:
            lines.append("  not a PyTorch bug the suite knows yet (docs/upstream-bugs.md)")
        lines.append(
            "  PyTorch alone: "
            + replay_command(PYTORCH_CONV_BN.name, self.prop, failure.case, PYTORCH_SPEC)
        )
        lines.append("  accept upstream findings in CI: --verify-accept-upstream")
        return lines


def judge(variant, prop_module, case) -> Upstream | None:
    """Upstream when PyTorch's composite fails `prop_module` on `case` the same way `variant`
    does (see the module's docstring); None when the finding is the kernel's own or cannot be
    judged."""
    if getattr(variant, "form", "") != "standard" or prop_module.NAME in NOT_JUDGED:
        return None
    if getattr(variant, "fn", None) is PYTORCH_CONV_BN.fn:
        return None  # PyTorch replayed alone: its findings are what they are
    # The property applies to PyTorch exactly as it did to the kernel: the same declared features.
    pytorch = dataclasses.replace(PYTORCH_CONV_BN, supports=variant.supports)
    with runner.uninitialized_memory_filled():  # as the kernel's run had it
        if _holds(prop_module, pytorch, case) is not False:
            return None
        if not _same_results(
            variant, pytorch, case, gradients=prop_module.NAME not in FORWARD_ONLY
        ):
            return None
        for bug in KNOWN_BUGS:
            if bug.applies is None or bug.fixed is None or not bug.applies(case):
                continue
            fixed = dataclasses.replace(pytorch, fn=_composite(bug.fixed))
            if _holds(prop_module, fixed, case):
                return Upstream(prop_module.NAME, bug)
    return Upstream(prop_module.NAME)


def _holds(prop_module, variant, case) -> bool | None:
    """Whether the property holds for `variant` on `case`; None when it cannot be told (it does
    not apply, or the suite's own code failed)."""
    import pytest

    try:
        prop_module.check(variant, case)
    except (PropertyFailure, runner.KernelRaised, runner.ContractViolation):
        return False
    except pytest.skip.Exception:
        return None
    except Exception:  # noqa: BLE001 - no verdict rather than a wrong one
        return None
    return True


def _call(variant, case, arrays, gradients: bool):
    try:
        return runner.run(variant, case, arrays, gradients=gradients)[0]
    except runner.KernelRaised as error:
        return (type(error.error), error.stage)
    except runner.ContractViolation as error:
        return (runner.ContractViolation, str(error))


def _same_results(variant, pytorch, case, *, gradients: bool) -> bool:
    """One call of each on `case` agrees output by output within the bounds (NaN and inf in the
    same places), and both are wrong against the oracle in the same outputs."""
    arrays = case.arrays()
    mine, theirs = _call(variant, case, arrays, gradients), _call(pytorch, case, arrays, gradients)
    if not isinstance(mine, oracle.Results) or not isinstance(theirs, oracle.Results):
        return mine == theirs
    exact = oracle.expected(case, arrays, gradients=gradients)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=gradients)
    largest = largest_finite(case.dtype)
    for name in oracle.RESULT_NAMES:
        a, b = getattr(mine, name), getattr(theirs, name)
        if a is None and b is None:
            continue
        if a is None or b is None:
            return False
        bound, truth = getattr(bounds, name), getattr(exact, name)
        if bound is None or truth is None:
            if not (a.shape == b.shape and ((a == b) | (a != a) & (b != b)).all()):
                return False
            continue
        wrong_a = not compare(name, a, truth, bound, largest=largest).ok
        wrong_b = not compare(name, b, truth, bound, largest=largest).ok
        if wrong_a != wrong_b or not compare(name, a, b, bound, largest=largest).ok:
            return False
    return True
