"""The composite the fused kernels compute: ``batch_norm(conv2d(x, weight, bias))``.

Signatures and semantics are docs/contract.md's. Inputs are read as float64 and never modified.
"""

from __future__ import annotations

import numpy as np

from .batch_norm import batch_norm, batch_norm_backward
from .conv import conv2d, conv2d_backward, conv2d_output_shape
from .validation import check_batch_norm_args, check_channel_vector, check_conv_args


def _prepare(
    x,
    weight,
    bias,
    bn_weight,
    bn_bias,
    running_mean,
    running_var,
    *,
    stride,
    padding,
    dilation,
    groups,
    training,
    momentum,
    eps,
    form,
):
    """float64 views of the inputs, all checked before any arithmetic."""
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var = (
        None if v is None else np.asarray(v, dtype=np.float64)
        for v in (x, weight, bias, bn_weight, bn_bias, running_mean, running_var)
    )
    check_conv_args(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    y_shape = conv2d_output_shape(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation
    )
    check_channel_vector(bias, weight.shape[0])
    check_batch_norm_args(
        y_shape,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        training=training,
        momentum=momentum,
        eps=eps,
        form=form,
    )
    return x, weight, bias, bn_weight, bn_bias, running_mean, running_var


def conv_bn(
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
    form="tutorial",
):
    """``(out, new_running_mean, new_running_var)``; the stats are None when not given."""
    conv_kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    bn_kw = dict(training=training, momentum=momentum, eps=eps, form=form)
    args = _prepare(
        x, weight, bias, bn_weight, bn_bias, running_mean, running_var, **conv_kw, **bn_kw
    )
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var = args
    y = conv2d(x, weight, bias, **conv_kw)
    return batch_norm(y, bn_weight, bn_bias, running_mean, running_var, **bn_kw)


def conv_bn_backward(
    grad_out,
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
    form="tutorial",
):
    """Gradients of ``sum(grad_out * conv_bn(...)[0])`` by the chain rule through batch_norm
    then conv2d (the convolution is recomputed, as the tutorial's fused backward does).

    Returns ``(grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias)``, None for an
    absent input. ``momentum`` only affects the running stats, not the output: it is accepted
    (and checked) so that both functions take the same keywords.
    """
    conv_kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    bn_kw = dict(training=training, eps=eps, form=form)
    args = _prepare(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        momentum=momentum,
        **conv_kw,
        **bn_kw,
    )
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var = args
    grad_out = np.asarray(grad_out, dtype=np.float64)
    y = conv2d(x, weight, bias, **conv_kw)
    if grad_out.shape != y.shape:
        raise ValueError(f"grad_out must have the output's shape {y.shape}, got {grad_out.shape}")
    grad_y, grad_bn_weight, grad_bn_bias = batch_norm_backward(
        grad_out, y, bn_weight, bn_bias, running_mean, running_var, **bn_kw
    )
    grad_x, grad_weight, grad_bias = conv2d_backward(
        grad_y, x, weight, has_bias=bias is not None, **conv_kw
    )
    return grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias
