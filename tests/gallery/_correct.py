"""A small, readable, correct fused Conv2d+BatchNorm in torch: the base every gallery bug is
planted in.

Two implementations, both forms ("tutorial" and "standard"), every conv and batch-norm feature:

* `Traced`: plain torch ops, differentiated by autograd. Each stage is a method (validate, conv,
  batch_stats, denominator, update_running_stats, ...), so a forward or running-stats bug is a
  subclass that overrides one method with a few wrong lines.
* `Explicit`: the same forward inside a `torch.autograd.Function` whose backward is written by hand
  the memory-saving way (save only the conv input and per-channel statistics, recompute the conv in
  backward). Its backward is split the same way (recompute_conv, bn_backward, centre, var_term,
  bn_param_grads, conv_backward), so a backward bug is a one-method override too.

The maths, with d = y - mean and n = N * H_out * W_out values per channel:
  tutorial: out = d / D,  D = s + eps,          s = sqrt(sum(d^2) / (n - 1))
  standard: out = d / D,  D = sqrt(v_b + eps),  v_b = sum(d^2) / n
  eval:     out = (y - running_mean) / D_eval with D_eval = sqrt(rv) + eps or sqrt(rv + eps)
  then out * bn_weight + bn_bias. Training updates running_mean/var with the unbiased variance.
  Input gradient of training mode (gg = grad_out * bn_weight):
    grad_y = (gg - mean(gg)) / D - d * k,
    k = sum(gg * d) / (n * D^3)                          standard
    k = sum(gg * d) / ((n - 1) * s * D^2)  (0 if s = 0)   tutorial (finite limit at zero variance)
  Eval mode: grad_y = gg / D_eval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input, conv2d_weight

from fused.variant import BN_FEATURES, CONV_FEATURES, Variant

ALL_FEATURES = CONV_FEATURES | BN_FEATURES
DIMS = (0, 2, 3)


def pair(value) -> tuple:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * 2


def per_channel(t):
    return t[None, :, None, None]


def values_per_channel(y) -> int:
    return y.shape[0] * y.shape[2] * y.shape[3]


def safe_sqrt(v):
    """sqrt with gradient 0 (not inf * 0 = NaN) where v == 0."""
    positive = v > 0
    return torch.where(
        positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v)
    )


@dataclass
class Call:
    """Everything but the tensors: conv geometry and batch-norm options."""

    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    training: bool
    momentum: float
    eps: float

    @property
    def conv(self) -> dict:
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )


class Traced:
    """Correct Conv2d + BatchNorm (either form), differentiated by autograd."""

    def __init__(self, form: str):
        self.form = form

    # -- the Variant fn signature ----------------------------------------------------------------
    def __call__(
        self,
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
        c = Call(
            pair(stride),
            pair(padding),
            pair(dilation),
            int(groups),
            bool(training),
            float(momentum),
            float(eps),
        )
        self.validate(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c)
        return self.compute(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c)

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        y = self.conv(x, weight, bias, c)
        if c.training:
            mean, var = self.batch_stats(y)
            denom = self.denominator(var, values_per_channel(y), c.eps)
            xhat = (y - per_channel(mean)) / per_channel(denom)
            if running_mean is not None:
                with torch.no_grad():
                    self.update_running_stats(
                        running_mean,
                        running_var,
                        mean.detach(),
                        var.detach(),
                        c.momentum,
                        values_per_channel(y),
                    )
        else:
            xhat = self.eval_normalise(y, running_mean, running_var, c)
        return self.affine(xhat, bn_weight, bn_bias)

    # -- stages ----------------------------------------------------------------------------------
    def validate(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        """Raise ValueError before anything runs or is updated."""
        if x.dim() != 4 or weight.dim() != 4:
            raise ValueError(
                f"x and weight must be 4-D, got {tuple(x.shape)} and {tuple(weight.shape)}"
            )
        c_out = weight.shape[0]
        if c.groups < 1 or x.shape[1] != weight.shape[1] * c.groups or c_out % c.groups:
            raise ValueError(
                f"x has {x.shape[1]} channels; weight {tuple(weight.shape)} with "
                f"groups={c.groups} expects {weight.shape[1] * c.groups}"
            )
        for name, t in (
            ("bias", bias),
            ("bn_weight", bn_weight),
            ("bn_bias", bn_bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ):
            if t is not None and tuple(t.shape) != (c_out,):
                raise ValueError(f"{name} must have shape ({c_out},), got {tuple(t.shape)}")
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var go together")
        if not c.training and running_mean is None:
            raise ValueError("eval mode needs running statistics")
        if c.training:
            self.check_values_per_channel(x, weight, c)

    def check_values_per_channel(self, x, weight, c):
        out_hw = [
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, k, s, p, d in zip(
                x.shape[2:], weight.shape[2:], c.stride, c.padding, c.dilation, strict=True
            )
        ]
        if x.shape[0] * out_hw[0] * out_hw[1] < 2:
            raise ValueError("training needs at least two values per channel (N*H_out*W_out >= 2)")

    def conv(self, x, weight, bias, c):
        # The bias is added outside F.conv2d: PyTorch 2.13's CPU conv with a bias segfaults on some
        # legal channels_last geometries (width 1, stride 2, padding 1, dilation 2).
        y = F.conv2d(x, weight, None, **c.conv)
        return y if bias is None else y + per_channel(bias)

    def batch_stats(self, y):
        """(mean, unbiased variance) per channel, two-pass."""
        mean = y.mean(dim=DIMS)
        d = y - per_channel(mean)
        return mean, (d * d).sum(dim=DIMS) / (values_per_channel(y) - 1)

    def denominator(self, var_unbiased, n, eps):
        if self.form == "tutorial":
            return safe_sqrt(var_unbiased) + eps
        return torch.sqrt(var_unbiased * ((n - 1) / n) + eps)

    def eval_denominator(self, running_var, eps):
        if self.form == "tutorial":
            return torch.sqrt(running_var) + eps
        return torch.sqrt(running_var + eps)

    def eval_normalise(self, y, running_mean, running_var, c):
        denom = self.eval_denominator(running_var, c.eps)
        return (y - per_channel(running_mean)) / per_channel(denom)

    def update_running_stats(self, running_mean, running_var, mean, var_unbiased, momentum, n):
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var_unbiased)

    def affine(self, xhat, bn_weight, bn_bias):
        if bn_weight is not None:
            xhat = xhat * per_channel(bn_weight)
        if bn_bias is not None:
            xhat = xhat + per_channel(bn_bias)
        return xhat


class _Fused(torch.autograd.Function):
    """Dispatches forward and backward to an `Explicit` instance (the first argument)."""

    @staticmethod
    def forward(ctx, impl, c, x, weight, bias, bn_weight, bn_bias, running_mean, running_var):
        ctx.impl, ctx.c = impl, c
        return impl.forward(ctx, c, x, weight, bias, bn_weight, bn_bias, running_mean, running_var)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grads = ctx.impl.backward(ctx, ctx.c, grad_out)
        return (None, None) + tuple(grads) + (None, None)


class Explicit(Traced):
    """Correct, memory-saving: saves x and per-channel vectors, recomputes the conv in backward."""

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        return _Fused.apply(self, c, x, weight, bias, bn_weight, bn_bias, running_mean, running_var)

    def forward(self, ctx, c, x, weight, bias, bn_weight, bn_bias, running_mean, running_var):
        y = self.conv(x, weight, bias, c)
        if c.training:
            mean, var = self.batch_stats(y)
            std = safe_sqrt(var) if self.form == "tutorial" else None
            denom = self.denominator(var, values_per_channel(y), c.eps)
            if running_mean is not None:
                self.update_running_stats(
                    running_mean, running_var, mean, var, c.momentum, values_per_channel(y)
                )
        else:
            mean, std = running_mean.clone(), None
            denom = self.eval_denominator(running_var, c.eps)
        self.save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        out = (y - per_channel(mean)) / per_channel(denom)
        return self.affine(out, bn_weight, bn_bias)

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        ctx.save_for_backward(x, weight, bias, bn_weight, mean, std, denom)

    def saved(self, ctx, c):
        """(x, weight, bias, bn_weight, y, mean, std, denom) with y recomputed."""
        x, weight, bias, bn_weight, mean, std, denom = ctx.saved_tensors
        return x, weight, bias, bn_weight, self.recompute_conv(x, weight, bias, c), mean, std, denom

    def backward(self, ctx, c, grad_out):
        x, weight, bias, bn_weight, y, mean, std, denom = self.saved(ctx, c)
        needs = ctx.needs_input_grad[2:7]  # x, weight, bias, bn_weight, bn_bias
        grad_y, grad_bn_weight, grad_bn_bias = self.bn_backward(
            grad_out, y, mean, std, denom, bn_weight, c
        )
        grad_x, grad_weight, grad_bias = self.conv_backward(
            grad_y, grad_out, x, weight, bias is not None, c
        )
        grads = (grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias)
        return tuple(g if need else None for g, need in zip(grads, needs, strict=True))

    # -- backward stages -------------------------------------------------------------------------
    def recompute_conv(self, x, weight, bias, c):
        return self.conv(x, weight, bias, c)

    def bn_backward(self, grad_out, y, mean, std, denom, bn_weight, c):
        d = y - per_channel(mean)
        grad_bn_weight, grad_bn_bias = self.bn_param_grads(grad_out, d / per_channel(denom))
        gg = self.scale_grad(grad_out, bn_weight)
        if not c.training:
            return gg / per_channel(denom), grad_bn_weight, grad_bn_bias
        n = values_per_channel(y)
        grad_y = self.centre(gg) / per_channel(denom) - d * per_channel(
            self.var_term(gg, d, std, denom, n)
        )
        return grad_y, grad_bn_weight, grad_bn_bias

    def scale_grad(self, grad_out, bn_weight):
        """gg = grad_out * bn_weight, the gradient with respect to xhat."""
        return grad_out if bn_weight is None else grad_out * per_channel(bn_weight)

    def bn_param_grads(self, grad_out, xhat):
        return (grad_out * xhat).sum(dim=DIMS), grad_out.sum(dim=DIMS)

    def centre(self, gg):
        """The mean term: gradient through the batch mean."""
        return gg - per_channel(gg.mean(dim=DIMS))

    def var_term(self, gg, d, std, denom, n):
        """k, the per-channel factor of d: gradient through the batch variance."""
        projection = (gg * d).sum(dim=DIMS)
        # Divided step by step: on values near 1e12, n * D^3 overflows float32 (then k = 0).
        if self.form == "standard":
            return projection / (n * denom) / denom**2
        positive = std > 0
        safe_std = torch.where(positive, std, torch.ones_like(std))
        return torch.where(
            positive, projection / ((n - 1) * safe_std) / denom**2, torch.zeros_like(std)
        )

    def conv_backward(self, grad_y, grad_out, x, weight, has_bias, c):
        grad_x = conv2d_input(x.shape, weight, grad_y, **c.conv)
        grad_weight = conv2d_weight(x, weight.shape, grad_y, **c.conv)
        grad_bias = grad_y.sum(dim=DIMS) if has_bias else None
        return grad_x, grad_weight, grad_bias


class ArrivalOrder(Traced):
    """Per-channel sums accumulated in the order programs arrive (a random order per call, as with
    atomics): the last bits change from call to call. Correct where its Variant declares
    'nondeterministic' (the gallery's `arrival_order_sum` is the same kernel undeclared)."""

    def batch_stats(self, y):
        values = y.transpose(0, 1).reshape(y.shape[1], -1)
        m = values.shape[1]
        order = torch.randperm(m)
        mean = torch.zeros(values.shape[0], dtype=values.dtype)
        for chunk in order.split(max(1, m // 7)):
            mean = mean + values[:, chunk].sum(dim=1)
        mean = mean / m
        d = values - mean[:, None]
        return mean, (d * d).sum(dim=1) / (m - 1)


class OutputSaving(Explicit):
    """InPlace-ABN's memory trade, made safely: backward recovers the centred conv output from the
    layer's own output (y - mean = out * D) instead of recomputing the convolution, and saves that
    output through save_for_backward, so autograd raises its in-place error when a program
    modifies it before backward. Its Variant declares the `inplace_output` limitation. Without
    affine: recovering xhat = (out - bn_bias) / bn_weight is ill-conditioned where bn_weight is
    near 0."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        ctx.pending = (x, weight, bias, bn_weight, mean, std, denom)  # saved with the output

    def forward(self, ctx, c, *args):
        out = super().forward(ctx, c, *args)
        self.save_with_output(ctx, ctx.pending, out)
        del ctx.pending
        return out

    def save_with_output(self, ctx, tensors, out):
        ctx.save_for_backward(*tensors, out)

    def saved_with_output(self, ctx):
        *tensors, out = ctx.saved_tensors
        return tensors, out

    def saved(self, ctx, c):
        (x, weight, bias, bn_weight, mean, std, denom), out = self.saved_with_output(ctx)
        # Backward reads the conv output only centred, y - mean = out * D: handed over with a zero
        # mean, since adding the mean back and subtracting it again loses |mean| u where the
        # values sit on a large offset.
        centred = out * per_channel(denom)
        return x, weight, bias, bn_weight, centred, torch.zeros_like(mean), std, denom


# What OutputSaving handles: it needs its own output in backward, and has no affine.
OUTPUT_SAVING_FEATURES = ALL_FEATURES - {"affine"}

CORRECT = [
    Variant("correct_traced_tutorial", Traced("tutorial"), form="tutorial", supports=ALL_FEATURES),
    Variant("correct_traced_standard", Traced("standard"), form="standard", supports=ALL_FEATURES),
    Variant(
        "correct_explicit_tutorial",
        Explicit("tutorial"),
        form="tutorial",
        supports=ALL_FEATURES,
        memory_saving=True,
    ),
    Variant(
        "correct_explicit_standard",
        Explicit("standard"),
        form="standard",
        supports=ALL_FEATURES,
        memory_saving=True,
    ),
    Variant(
        "correct_output_saving_standard",
        OutputSaving("standard"),
        form="standard",
        supports=OUTPUT_SAVING_FEATURES,
        limitations={"inplace_output"},
    ),
    Variant(
        "correct_arrival_order_standard",
        ArrivalOrder("standard"),
        form="standard",
        supports=ALL_FEATURES | {"nondeterministic"},
    ),
]
