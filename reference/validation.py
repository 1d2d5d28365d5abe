"""Argument normalisation and checks shared by the oracle's functions.

Every ``check_*`` returns the normalised arguments (or nothing) and raises ``ValueError`` with a
message that names the argument, the problem and the shapes involved. Values are never inspected
for finiteness: NaN and inf pass through so that the oracle can say what a kernel should do with
them.

The oracle keeps its own checks on purpose, apart from the kernels' argument validation in
``fused/`` and from the suite's case legality (``verify/legality.py``): an oracle that shared the
code under test could share its bugs. So the rules of ``docs/contract.md`` are restated here, and
this package imports nothing but NumPy (``FORMS`` too is its own copy of the contract's forms).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

FORMS = ("tutorial", "standard")


def as_pair(v, name):
    """An int or a sequence of two ints -> a tuple of two Python ints."""
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    try:
        items = tuple(v)
    except TypeError:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if len(items) != 2 or not all(
        isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in items
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return (int(items[0]), int(items[1]))


def check_spatial_args(x_shape, weight_shape, *, stride, padding, dilation):
    """Check ranks, stride/padding/dilation and that the output is not empty.

    Returns ``(stride, padding, dilation)`` as pairs.
    """
    stride = as_pair(stride, "stride")
    padding = as_pair(padding, "padding")
    dilation = as_pair(dilation, "dilation")
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {tuple(x_shape)}")
    if len(weight_shape) != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {tuple(weight_shape)}"
        )
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if min(*x_shape, *weight_shape) < 1:
        raise ValueError(
            f"empty dimension: x shape {tuple(x_shape)}, weight shape {tuple(weight_shape)}"
        )
    _, _, h, w = x_shape
    _, _, kh, kw = weight_shape
    for axis, size, k, p, d in (
        ("height", h, kh, padding[0], dilation[0]),
        ("width", w, kw, padding[1], dilation[1]),
    ):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError(
                f"empty output: the dilated kernel's {axis} {d * (k - 1) + 1} is larger than "
                f"the padded input's {axis} {size + 2 * p} (x shape {tuple(x_shape)}, weight "
                f"shape {tuple(weight_shape)}, padding {padding}, dilation {dilation})"
            )
    return stride, padding, dilation


def check_conv_args(x_shape, weight_shape, *, stride, padding, dilation, groups):
    """Check a convolution's shapes and hyper-parameters, groups included.

    Returns ``(stride, padding, dilation, groups)`` with the first three as pairs.
    """
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    stride, padding, dilation = check_spatial_args(
        x_shape, weight_shape, stride=stride, padding=padding, dilation=dilation
    )
    c_in = x_shape[1]
    c_out, c_per_group = weight_shape[:2]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels ({c_in}) and the output channels "
            f"({c_out}) (x shape {tuple(x_shape)}, weight shape {tuple(weight_shape)})"
        )
    if c_in != c_per_group * groups:
        raise ValueError(
            f"x has {c_in} channels but weight.shape[1] * groups = {c_per_group} * {groups} "
            f"= {c_per_group * groups} (x shape {tuple(x_shape)}, weight shape "
            f"{tuple(weight_shape)})"
        )
    return stride, padding, dilation, groups


def check_channel_vector(vector, channels, name="bias"):
    """A per-channel vector (conv bias, bn_weight, bn_bias, a running stat) of shape
    (channels,), or None."""
    if vector is not None and np.shape(vector) != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {np.shape(vector)}")


def check_batch_norm_args(
    y_shape, bn_weight, bn_bias, running_mean, running_var, *, training, momentum, eps, form
):
    """Check a batch norm's inputs against the shape of its input ``y`` (N, C, H, W)."""
    if len(y_shape) != 4:
        raise ValueError(f"batch norm input must be 4-D (N, C, H, W), got shape {tuple(y_shape)}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    channels = y_shape[1]
    for name, v in (
        ("bn_weight", bn_weight),
        ("bn_bias", bn_bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        check_channel_vector(v, channels, name)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or neither)")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    if running_var is not None and np.any(np.asarray(running_var) < 0):
        raise ValueError("running_var must be non-negative")
    if not training and running_mean is None:
        raise ValueError("eval mode (training=False) needs running_mean and running_var")
    if training:
        n, _, h, w = y_shape
        if n * h * w < 2:
            raise ValueError(
                f"training needs at least two values per channel, got N*H_out*W_out = "
                f"{n}*{h}*{w} = {n * h * w} (batch norm input shape {tuple(y_shape)})"
            )


def quiet_on_nonfinite(fn):
    """Run ``fn`` under ``np.errstate(all="ignore")`` when an array argument holds NaN or inf.

    Non-finite inputs are legal and should simply propagate (inf - inf = NaN and so on) without
    floating-point warnings; with finite inputs a warning would mean a bug in the oracle, so
    there it stays audible (the test configuration turns it into an error).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        arrays = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
        if all(np.isfinite(a).all() for a in arrays if a.dtype.kind in "fc"):
            return fn(*args, **kwargs)
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper
