"""Is a drawn `Case` legal? Checked before any kernel sees it, so that a case the suite built wrong
is reported as the suite's failure, never as the kernel's.

Deliberately independent of the strategies that build cases (and of `reference.validation`, the
oracle's own argument checks): it restates the contract's rules on plain integers.
"""

from __future__ import annotations

from fused.variant import DIFFERENTIABLE
from verify.case import GRAD_LAYOUTS, GRAD_MODES, LAYOUTS, PROGRAMS, Case
from verify.dtypes import DTYPES


class IllegalCase(ValueError):
    """The suite built a case outside the contract."""


def problems(case: Case) -> list[str]:
    """Everything illegal about `case`, in words; empty when it is legal."""
    found = []
    if min(case.batch, case.in_channels, case.out_channels, case.height, case.width) < 1:
        found.append("an empty dimension")
    if case.groups < 1 or case.in_channels % case.groups or case.out_channels % case.groups:
        found.append(
            f"groups={case.groups} does not divide channels "
            f"{case.in_channels} -> {case.out_channels}"
        )
    if min(case.kernel + case.stride + case.dilation) < 1 or min(case.padding) < 0:
        found.append("a non-positive kernel, stride or dilation, or a negative padding")
    for size, k, pad, dil, axis in zip(
        (case.height, case.width),
        case.kernel,
        case.padding,
        case.dilation,
        ("height", "width"),
        strict=True,
    ):
        if size + 2 * pad < dil * (k - 1) + 1:
            found.append(
                f"kernel extent {dil * (k - 1) + 1} exceeds the padded {axis} {size + 2 * pad}"
            )
    if not case.defect and case.training and case.values_per_channel < 2:
        found.append(f"training with {case.values_per_channel} value(s) per channel")
    if not case.training and not case.running_stats:
        found.append("eval mode without running statistics")
    if case.dtype not in DTYPES or case.param_dtype not in ("", *DTYPES):
        found.append(f"unknown dtype {case.dtype!r} / {case.param_dtype!r}")
    if case.layout not in LAYOUTS or case.grad_layout not in GRAD_LAYOUTS:
        found.append(f"unknown layout {case.layout!r} / {case.grad_layout!r}")
    if case.grad_mode not in GRAD_MODES:
        found.append(f"unknown grad mode {case.grad_mode!r}")
    if case.program not in ("", *PROGRAMS):
        found.append(f"unknown program {case.program!r}")
    elif case.program and case.program != "repeated" and case.grad_mode != "enabled":
        found.append(f"program {case.program!r} needs autograd, not grad mode {case.grad_mode!r}")
    unknown = set(case.requires_grad) - set(DIFFERENTIABLE)
    if unknown or not case.requires_grad:
        found.append(f"requires_grad {list(case.requires_grad)} names no input or unknown ones")
    return found


def check(case: Case) -> None:
    """Raise IllegalCase naming every problem of `case`."""
    found = problems(case)
    if found:
        raise IllegalCase(
            f"the suite built an illegal case ({'; '.join(found)}): {case.describe()}"
        )
