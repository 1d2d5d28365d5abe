"""The one argument validator of the kernels in `fused/`, and the validated call it returns.

Every kernel validates a call here before it computes or modifies anything (through
`fused.entry.conv_bn_entry`), so all of them reject the same bad calls with the same `ValueError`
messages, and all of them read their arguments from one `ConvBNCall`. The signature of
`check_conv_bn_arguments` is the contract's `Variant` fn signature, extended with `form` and
`num_batches_tracked`: it is written here once, and every kernel's entry point takes it from here.
(The NumPy oracle in `reference/` keeps a validator of its own on purpose: the suite checks the
kernels against it, so it must not share their code.)"""

from __future__ import annotations

import numbers
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from fused.variant import FORMS

__all__ = ["ConvConfig", "NormConfig", "ConvBNCall", "check_conv_bn_arguments"]


class ConvConfig(NamedTuple):
    """The convolution's options, normalised: `conv_forward(x, weight, bias, *conv)` reads them
    in `F.conv2d`'s order."""

    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int


class NormConfig(NamedTuple):
    """The batch norm's options. `momentum` is the running statistics' blend factor; None only
    for a cumulative average whose count is still to be read (see `fused.entry`)."""

    training: bool
    momentum: Optional[float]
    eps: float
    form: str


class ConvBNCall(NamedTuple):
    """A validated fused Conv2d+BatchNorm call: the tensors as given, the options normalised."""

    x: Tensor
    weight: Tensor
    bias: Optional[Tensor]
    bn_weight: Optional[Tensor]
    bn_bias: Optional[Tensor]
    running_mean: Optional[Tensor]
    running_var: Optional[Tensor]
    num_batches_tracked: Optional[Tensor]
    conv: ConvConfig
    norm: NormConfig

    def keywords(self) -> dict:
        """The call as keyword arguments of `check_conv_bn_arguments` (feature detection, and
        the kernels that hand the call on to a function of the contract's signature)."""
        tensors = dict(zip(self._fields[:8], self[:8], strict=True))
        return {**tensors, **self.conv._asdict(), **self.norm._asdict()}


def _as_pair(value, name: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        items = tuple(value)
    else:
        items = (value, value)
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        out.append(int(v))
    return tuple(out)


def _check_channel_vector(t: Optional[Tensor], name: str, channels: int, x: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a tensor or None, got {type(t).__name__}")
    if tuple(t.shape) != (channels,):
        raise ValueError(
            f"{name} must have shape ({channels},) (one value per output channel), "
            f"got {tuple(t.shape)}"
        )
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    if not t.is_floating_point():
        # Integer running statistics would silently truncate the blended values.
        raise ValueError(f"{name} must be floating point, got {t.dtype}")


def check_conv_bn_arguments(
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
    form="standard",
    num_batches_tracked=None,
) -> ConvBNCall:
    """Validate a fused Conv2d+BatchNorm call without touching anything; raise ValueError with a
    clear message on any problem. Returns the call, its options normalised."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise ValueError("x and weight must be tensors")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}"
        )
    if not x.is_floating_point() or x.dtype != weight.dtype:
        raise ValueError(
            f"x and weight must share one floating dtype, got {x.dtype} and {weight.dtype}"
        )
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    stride = _as_pair(stride, "stride")
    padding = _as_pair(padding, "padding")
    dilation = _as_pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be positive, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    n_batch, c_in, height, width = x.shape
    c_out, c_in_per_group, k_h, k_w = weight.shape
    if c_out % groups != 0:
        raise ValueError(f"out channels ({c_out}) must be divisible by groups ({groups})")
    if c_in != c_in_per_group * groups:
        raise ValueError(
            f"x has {c_in} channels but weight of shape {tuple(weight.shape)} with "
            f"groups={groups} expects {c_in_per_group * groups}"
        )
    if c_out == 0 or c_in_per_group == 0 or k_h == 0 or k_w == 0:
        raise ValueError(f"weight of shape {tuple(weight.shape)} has an empty dimension")
    extent_h = dilation[0] * (k_h - 1) + 1
    extent_w = dilation[1] * (k_w - 1) + 1
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    if padded_h < extent_h or padded_w < extent_w:
        raise ValueError(
            f"kernel of extent ({extent_h}, {extent_w}) (dilation {dilation}) is "
            f"larger than the padded input ({padded_h}, {padded_w}) for x of shape "
            f"{tuple(x.shape)}"
        )
    out_h = (padded_h - extent_h) // stride[0] + 1
    out_w = (padded_w - extent_w) // stride[1] + 1
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} but x is on {x.device}")
    for name, vector in (
        ("bias", bias),
        ("bn_weight", bn_weight),
        ("bn_bias", bn_bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        _check_channel_vector(vector, name, c_out, x)
    if bias is not None and bias.dtype != x.dtype:
        # The convolution adds it in x's dtype (bn_weight, bn_bias and the running statistics
        # may be float32 beside half x, as under autocast).
        raise ValueError(f"bias must have x's dtype {x.dtype}, got {bias.dtype}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    if momentum is not None and (
        isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
    ):
        raise ValueError(f"momentum must be a number or None, got {momentum!r}")
    if num_batches_tracked is not None and (
        not isinstance(num_batches_tracked, Tensor)
        or num_batches_tracked.numel() != 1
        or num_batches_tracked.is_floating_point()
        or num_batches_tracked.is_complex()
        or num_batches_tracked.dtype == torch.bool
    ):
        raise ValueError(
            "num_batches_tracked must be a one-element integer tensor (a count, as "
            "nn.BatchNorm2d's) or None"
        )
    if training:
        values = n_batch * out_h * out_w
        if values < 2:
            raise ValueError(
                f"expected more than 1 value per channel when training, got {values} "
                f"(conv output shape {(n_batch, c_out, out_h, out_w)} from x of shape "
                f"{tuple(x.shape)})"
            )
        if running_mean is not None and momentum is None and num_batches_tracked is None:
            raise ValueError("momentum=None (cumulative moving average) needs num_batches_tracked")
    elif running_mean is None:
        raise ValueError("eval mode (training=False) needs running_mean and running_var")
    momentum = None if momentum is None else float(momentum)
    return ConvBNCall(
        x=x,
        weight=weight,
        bias=bias,
        bn_weight=bn_weight,
        bn_bias=bn_bias,
        running_mean=running_mean,
        running_var=running_var,
        num_batches_tracked=num_batches_tracked,
        conv=ConvConfig(stride, padding, dilation, groups),
        norm=NormConfig(bool(training), momentum, float(eps), form),
    )
