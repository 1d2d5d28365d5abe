"""The oracle's answers for a `Case`: what a perfect kernel returns, from `reference.conv_bn`
and `reference.conv_bn_backward` in float64 on exactly the numbers the kernel receives."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

import reference
from fused.variant import INPUTS
from verify.case import Case

RESULT_NAMES = (
    "out",
    "running_mean",
    "running_var",
    "grad_x",
    "grad_weight",
    "grad_bias",
    "grad_bn_weight",
    "grad_bn_bias",
)
GRADIENT_NAMES = RESULT_NAMES[3:]


@dataclass
class Results:
    out: np.ndarray | None = None
    running_mean: np.ndarray | None = None
    running_var: np.ndarray | None = None
    grad_x: np.ndarray | None = None
    grad_weight: np.ndarray | None = None
    grad_bias: np.ndarray | None = None
    grad_bn_weight: np.ndarray | None = None
    grad_bn_bias: np.ndarray | None = None

    def items(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value


def _inputs(arrays: dict) -> tuple:
    return tuple(arrays[k] for k in INPUTS)


def conv_output(case: Case, arrays: dict) -> np.ndarray:
    """The oracle's convolution output (the batch norm's input) for the case's arrays."""
    return reference.conv2d(arrays["x"], arrays["weight"], arrays["bias"], **case.conv_options())


def expected(case: Case, arrays: dict, *, gradients: bool = True) -> Results:
    """The float64 oracle's answers: output, new running stats and (optionally) all gradients."""
    kwargs = dict(case.kwargs(), form=case.form)
    out, new_mean, new_var = reference.conv_bn(*_inputs(arrays), **kwargs)
    results = Results(out=out, running_mean=new_mean, running_var=new_var)
    if gradients:
        grads = reference.conv_bn_backward(arrays["grad_out"], *_inputs(arrays), **kwargs)
        for name, grad in zip(GRADIENT_NAMES, grads, strict=True):
            setattr(results, name, grad)
    return results
