"""The fused Conv2d + BatchNorm2d as a `torch.library` custom op, "convbn::memory_saving_conv_bn".

The op is opaque to `torch.compile` (its forward is the same `forward_math` as
`fused.functional.memory_saving_conv_bn`), has a fake (meta) kernel for tracing, declares its
in-place mutation of the running statistics and `num_batches_tracked` (`mutates_args`), and an
autograd formula registered with `torch.library.register_autograd` whose `setup_context` saves only
the conv input, the conv weight/bias, bn_weight and C-sized statistics. Its backward is the same
`backward_math` (conv recompute, batch-norm backward, native conv backward).

Under `torch.compile` the Python entry `memory_saving_conv_bn_op` does not call the op: it traces
the same function in plain ops (`fused.traceable`), which the compiler's partitioner sees through.
Compiled as an opaque op inside the tutorial's MNIST network the op saved 0.34x eager's bytes at
1.50x eager's step time, against 0.66x at 0.67-0.81x for the compiled plain ops, 0.28x with an
activation memory budget of 0.5 (README, "Under torch.compile"). The op itself,
`torch.ops.convbn.memory_saving_conv_bn`, stays opaque for whoever calls it directly.

The op returns (out, mean, invstd, var): the batch (training) or running (eval) mean, the inverse
denominator and the biased batch variance (a copy of running_var in eval); the Python entry
`memory_saving_conv_bn_op` returns `out` only.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from fused import batch_norm_math as bnm
from fused import native_conv
from fused.arguments import ConvConfig, check_conv_bn_arguments
from fused.functional import backward_math, forward_math, track_batch
from fused.traceable import compile_aware

__all__ = ["memory_saving_conv_bn_op", "OP_NAME"]

OP_NAME = "convbn::memory_saving_conv_bn"
UPDATE_OP_NAME = "convbn::track_batch_"
BACKWARD_OP_NAME = "convbn::memory_saving_conv_bn_backward"


@torch.library.custom_op(OP_NAME, mutates_args=())
def _conv_bn_op(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    bn_weight: Optional[Tensor],
    bn_bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    training: bool,
    eps: float,
    form: str,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Functional part: (out, mean, invstd, var). Running stats are read in eval only."""
    cfg = ConvConfig(tuple(stride), tuple(padding), tuple(dilation), groups)
    if training:
        running_mean = running_var = None
    out, mean, invstd, var = forward_math(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        None,
        cfg,
        training,
        None,
        eps,
        form,
    )
    if var is None:
        var = running_var.to(mean.dtype, copy=True)
    return out, mean, invstd, var


@torch.library.custom_op(
    UPDATE_OP_NAME, mutates_args=("running_mean", "running_var", "num_batches_tracked")
)
def _track_batch(
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    num_batches_tracked: Optional[Tensor],
    mean: Tensor,
    var: Tensor,
    n: int,
    momentum: Optional[float],
) -> None:
    """Mutating part: increment num_batches_tracked, blend batch stats into the running ones."""
    track_batch(running_mean, running_var, num_batches_tracked, mean, var, n, momentum)


@_track_batch.register_fake
def _track_batch_fake(running_mean, running_var, num_batches_tracked, mean, var, n, momentum):
    return None


@_conv_bn_op.register_fake
def _conv_bn_op_fake(
    x,
    weight,
    bias,
    bn_weight,
    bn_bias,
    running_mean,
    running_var,
    stride,
    padding,
    dilation,
    groups,
    training,
    eps,
    form,
):
    out = native_conv.conv_forward(x, weight, bias, stride, padding, dilation, groups)
    sd = bnm.stat_dtype(x.dtype)
    channels = weight.shape[0]
    stats = [x.new_empty((channels,), dtype=sd) for _ in range(3)]
    return (out, *stats)


def _setup_context(ctx, inputs, output):
    (
        x,
        weight,
        bias,
        bn_weight,
        _bn_bias,
        _rm,
        _rv,
        stride,
        padding,
        dilation,
        groups,
        training,
        eps,
        form,
    ) = inputs
    _out, mean, invstd, var = output
    keep_var = var if (training and form == "tutorial") else None
    ctx.save_for_backward(x, weight, bias, bn_weight, mean, invstd, keep_var)
    ctx.cfg = ConvConfig(tuple(stride), tuple(padding), tuple(dilation), groups)
    ctx.training, ctx.eps, ctx.form = training, eps, form


@torch.library.custom_op(BACKWARD_OP_NAME, mutates_args=())
def _conv_bn_backward_op(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    bn_weight: Optional[Tensor],
    mean: Tensor,
    invstd: Tensor,
    var: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    training: bool,
    eps: float,
    form: str,
    needs_grad: List[bool],
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias); an empty tensor stands
    for a gradient that was not asked for (ops cannot return None)."""
    cfg = ConvConfig(tuple(stride), tuple(padding), tuple(dilation), groups)
    grads = backward_math(
        grad_out,
        x,
        weight,
        bias,
        bn_weight,
        mean,
        invstd,
        var,
        cfg,
        training,
        eps,
        form,
        tuple(needs_grad),
    )
    return tuple(g if g is not None else x.new_empty((0,)) for g in grads)


@_conv_bn_backward_op.register_fake
def _conv_bn_backward_op_fake(
    grad_out,
    x,
    weight,
    bias,
    bn_weight,
    mean,
    invstd,
    var,
    stride,
    padding,
    dilation,
    groups,
    training,
    eps,
    form,
    needs_grad,
):
    need_x, need_w, need_b, need_bnw, need_bnb = needs_grad

    def empty():  # a distinct tensor per output, as the real kernel returns
        return x.new_empty((0,))

    grad_x, grad_w, grad_b = empty(), empty(), empty()
    if need_x or need_w or need_b:
        # Same kernels as the real backward, so the fake strides match the real ones.
        grad_y = native_conv.conv_forward(x, weight, bias, stride, padding, dilation, groups)
        gx, gw, gb = native_conv.conv_backward(
            grad_y,
            x,
            weight,
            bias is not None,
            stride,
            padding,
            dilation,
            groups,
            (need_x, need_w, need_b),
        )
        grad_x = gx if need_x else empty()
        grad_w = gw if need_w else empty()
        grad_b = gb if need_b else empty()
    channels = weight.shape[0]
    bn_dtype = bn_weight.dtype if bn_weight is not None else grad_out.dtype
    grad_bnw = x.new_empty((channels,), dtype=bn_dtype) if need_bnw else empty()
    grad_bnb = x.new_empty((channels,), dtype=bn_dtype) if need_bnb else empty()
    return grad_x, grad_w, grad_b, grad_bnw, grad_bnb


def _backward(ctx, grad_out, _grad_mean, _grad_invstd, _grad_var):
    x, weight, bias, bn_weight, mean, invstd, var = ctx.saved_tensors
    needs = [bool(v) for v in ctx.needs_input_grad[:5]]
    cfg = ctx.cfg
    grads = _conv_bn_backward_op(
        grad_out,
        x,
        weight,
        bias,
        bn_weight,
        mean,
        invstd,
        var,
        list(cfg.stride),
        list(cfg.padding),
        list(cfg.dilation),
        cfg.groups,
        ctx.training,
        ctx.eps,
        ctx.form,
        needs,
    )
    grads = tuple(g if need else None for g, need in zip(grads, needs, strict=True))
    return grads + (None,) * 9


_conv_bn_op.register_autograd(_backward, setup_context=_setup_context)


@compile_aware
def memory_saving_conv_bn_op(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    bn_weight: Optional[Tensor] = None,
    bn_bias: Optional[Tensor] = None,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    training: bool = True,
    momentum: Optional[float] = 0.1,
    eps: float = 1e-3,
    form: str = "standard",
    num_batches_tracked: Optional[Tensor] = None,
) -> Tensor:
    """`fused.functional.memory_saving_conv_bn` through the "convbn::memory_saving_conv_bn" custom
    op (same arguments, same validation, same numbers); under `torch.compile(fullgraph=True)`, the
    same function in plain ops (`fused.traceable`)."""
    cfg = check_conv_bn_arguments(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        training=training,
        momentum=momentum,
        eps=eps,
        form=form,
        num_batches_tracked=num_batches_tracked,
    )
    out, mean, _invstd, var = _conv_bn_op(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        list(cfg.stride),
        list(cfg.padding),
        list(cfg.dilation),
        cfg.groups,
        bool(training),
        float(eps),
        form,
    )
    if training and (running_mean is not None or num_batches_tracked is not None):
        n = out.shape[0] * out.shape[2] * out.shape[3]
        _track_batch(
            running_mean,
            running_var,
            num_batches_tracked,
            mean.detach(),
            var.detach(),
            n,
            None if momentum is None else float(momentum),
        )
    return out
