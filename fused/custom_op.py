"""The fused Conv2d + BatchNorm2d as a `torch.library` custom op, "convbn::memory_saving_conv_bn".

The op is opaque to `torch.compile` (its forward is the same `forward_math` as
`fused.memory_saving.memory_saving_conv_bn`), has a fake (meta) kernel for tracing, leaves the
in-place update of the running statistics to a second op that declares it
("convbn::track_batch_", `mutates_args`; `num_batches_tracked` is counted before, by the entry
point, as nn.BatchNorm2d counts it), and has an
autograd formula registered with `torch.library.register_autograd` whose `setup_context` saves only
the conv input, the conv weight/bias, bn_weight and C-sized statistics. Its backward is the same
`backward_math` (conv recompute, batch-norm backward, native conv backward).

Under `torch.compile` the Python entry `memory_saving_conv_bn_op` does not call the op: it traces
the same function in plain ops (`fused.traceable`), which the compiler's partitioner sees through.
Compiled as an opaque op inside the tutorial's MNIST network the op saved 0.34x eager's bytes at
1.50x eager's step time, against 0.66x at 0.67-0.81x for the compiled plain ops, 0.28x with an
activation memory budget of 0.5 (docs/performance.md, "Under torch.compile"). The op itself,
`torch.ops.convbn.memory_saving_conv_bn`, stays opaque for whoever calls it directly.

The op returns (out, mean, invstd, var): the batch (training) or running (eval) mean, the inverse
denominator and the biased batch variance (a copy of running_var in eval); the Python entry
`memory_saving_conv_bn_op` returns `out` only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fused import batch_norm_math as bnm
from fused import native_conv
from fused.arguments import ConvBNCall, ConvConfig, NormConfig
from fused.entry import conv_bn_entry
from fused.memory_saving import backward_math, differentiable, forward_math, saved_variance
from fused.traceable import traceable_kernel

__all__ = ["memory_saving_conv_bn_op", "OP_NAME"]

OP_NAME = "convbn::memory_saving_conv_bn"
UPDATE_OP_NAME = "convbn::track_batch_"
BACKWARD_OP_NAME = "convbn::memory_saving_conv_bn_backward"


# The options both the forward and the backward op take after their tensors, in this order.
_OPTIONS_SCHEMA = (
    "int[] stride, int[] padding, int[] dilation, int groups, bool training, float eps, str form"
)


def _op_options(call: ConvBNCall) -> tuple:
    """The call's options as the ops take them (`_OPTIONS_SCHEMA`)."""
    conv, norm = call.conv, call.norm
    return (*map(list, conv[:3]), conv.groups, norm.training, norm.eps, norm.form)


def _from_op_options(stride, padding, dilation, groups, training, eps, form):
    conv = ConvConfig(tuple(stride), tuple(padding), tuple(dilation), groups)
    return conv, NormConfig(training, None, eps, form)


def _op_call(inputs) -> ConvBNCall:
    """The `ConvBNCall` of the forward op's inputs (running statistics are read in eval only)."""
    tensors, (conv, norm) = inputs[:7], _from_op_options(*inputs[7:])
    if norm.training:
        tensors = tensors[:5] + (None, None)
    return ConvBNCall(*tensors, None, conv, norm)


@torch.library.custom_op(
    OP_NAME,
    mutates_args=(),
    schema="(Tensor x, Tensor weight, Tensor? bias, Tensor? bn_weight, Tensor? bn_bias, "
    f"Tensor? running_mean, Tensor? running_var, {_OPTIONS_SCHEMA}) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
)
def _conv_bn_op(*inputs):
    """Functional part: (out, mean, invstd, var). Running stats are read in eval only."""
    out, mean, invstd, var = forward_math(_op_call(inputs))
    if var is None:
        running_var = inputs[6]
        var = running_var.to(mean.dtype, copy=True)
    return out, mean, invstd, var


@torch.library.custom_op(UPDATE_OP_NAME, mutates_args=("running_mean", "running_var"))
def _track_batch(
    running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, n: int, momentum: float
) -> None:
    """Mutating part: blend the batch statistics into the running ones."""
    bnm.update_running_stats(running_mean, running_var, mean, var, n, momentum)


@_track_batch.register_fake
def _track_batch_fake(*_inputs):
    return None


@_conv_bn_op.register_fake
def _conv_bn_op_fake(*inputs):
    call = _op_call(inputs)
    out = native_conv.conv_forward(call.x, call.weight, call.bias, *call.conv)
    sd = bnm.stat_dtype(call.x.dtype)
    channels = call.weight.shape[0]
    stats = [call.x.new_empty((channels,), dtype=sd) for _ in range(3)]
    return (out, *stats)


def _setup_context(ctx, inputs, output):
    call = _op_call(inputs)
    _out, mean, invstd, var = output
    ctx.save_for_backward(
        call.x, call.weight, call.bias, call.bn_weight, mean, invstd, saved_variance(var, call.norm)
    )
    ctx.op_options = _op_options(call)


@torch.library.custom_op(
    BACKWARD_OP_NAME,
    mutates_args=(),
    schema="(Tensor grad_out, Tensor x, Tensor weight, Tensor? bias, Tensor? bn_weight, "
    f"Tensor mean, Tensor invstd, Tensor? var, {_OPTIONS_SCHEMA}, bool[] needs_grad) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _conv_bn_backward_op(grad_out, *saved_options_needs):
    """(grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias); an empty tensor stands
    for a gradient that was not asked for (ops cannot return None)."""
    saved, needs_grad = saved_options_needs[:7], saved_options_needs[14]
    conv, norm = _from_op_options(*saved_options_needs[7:14])
    grads = backward_math(grad_out, saved, conv, norm, tuple(needs_grad))
    x = saved[0]
    return tuple(g if g is not None else x.new_empty((0,)) for g in grads)


@_conv_bn_backward_op.register_fake
def _conv_bn_backward_op_fake(grad_out, *saved_options_needs):
    x, weight, bias, bn_weight = saved_options_needs[:4]
    conv, _ = _from_op_options(*saved_options_needs[7:14])
    need_x, need_w, need_b, need_bnw, need_bnb = saved_options_needs[14]

    def empty():  # a distinct tensor per output, as the real kernel returns
        return x.new_empty((0,))

    grad_x, grad_w, grad_b = empty(), empty(), empty()
    if need_x or need_w or need_b:
        # Same kernels as the real backward, so the fake strides match the real ones.
        grad_y = native_conv.conv_forward(x, weight, bias, *conv)
        gx, gw, gb = native_conv.conv_backward(
            grad_y, x, weight, bias is not None, *conv, (need_x, need_w, need_b)
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
    needs = [bool(v) for v in ctx.needs_input_grad[:5]]
    grads = _conv_bn_backward_op(grad_out, *ctx.saved_tensors, *ctx.op_options, needs)
    grads = tuple(g if need else None for g, need in zip(grads, needs, strict=True))
    running_stats = (None, None)
    return grads + running_stats + (None,) * len(ctx.op_options)


_conv_bn_op.register_autograd(_backward, setup_context=_setup_context)


def _custom_op_kernel(call: ConvBNCall) -> Tensor:
    out, mean, _invstd, var = _conv_bn_op(*differentiable(call), *call[5:7], *_op_options(call))
    norm = call.norm
    if norm.training and call.running_mean is not None:
        n = bnm.values_per_channel(out)
        momentum = norm.momentum
        _track_batch(call.running_mean, call.running_var, mean.detach(), var.detach(), n, momentum)
    return out


memory_saving_conv_bn_op = conv_bn_entry(
    _custom_op_kernel,
    name="memory_saving_conv_bn_op",
    under_compile=traceable_kernel,
    doc="""`fused.memory_saving.memory_saving_conv_bn` through the "convbn::memory_saving_conv_bn"
    custom op (same arguments, same validation, same numbers); under
    `torch.compile(fullgraph=True)`, the same function in plain ops (`fused.traceable`).""",
)
