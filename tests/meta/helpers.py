"""The helpers of the meta tests: tiny correct and wrong variants and lower-precision imitations
(the suite's command lines are run by `tests.helpers.run_cli`).

The source of the variants written to files for `pytest verify --variant FILE:ATTR` subprocesses
is `VARIANT_FILE`, so those runs do not depend on this package being importable."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings

from fused.registry import builtin_variant
from fused.variant import BN_FEATURES, CONV_FEATURES, Variant
from verify.case import Case

ALL_CONV_BN = CONV_FEATURES | BN_FEATURES
# The small case the meta tests start from (each adds its features, form and seed).
TINY_CASE = Case(
    batch=2, in_channels=2, out_channels=3, height=4, width=4, kernel=(2, 2), dtype="float32"
)

# A module with correct and wrong variants that handle no optional feature.
VARIANT_FILE = '''\
import torch.nn.functional as F

from fused import Variant


def good_fn(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
            running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
            momentum=0.1, eps=1e-3):
    return F.batch_norm(F.conv2d(x, weight), None, None, training=True, eps=eps)


def no_mean_fn(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
               running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True,
               momentum=0.1, eps=1e-3):
    """Forgets to subtract the batch mean."""
    y = F.conv2d(x, weight)
    return y / (y.var(dim=(0, 2, 3), keepdim=True).sqrt() + eps)


GOOD = Variant("meta_good", good_fn, form="standard")
NO_MEAN = Variant("meta_no_mean", no_mean_fn, form="tutorial")
BOTH = [GOOD, NO_MEAN]
'''


def _round(dtype):
    def q(t):
        return t.to(dtype).to(torch.float32)

    return q


def lower_precision(dtype: torch.dtype, form: str) -> Variant:
    """Conv2d+BN computed in float32 with every intermediate rounded to `dtype` (autograd rounds
    the gradients at the same points): a kernel that silently works in half precision. Returns
    the output in the input's dtype. (CPU float16 convolutions are avoided: they crash upstream.)"""
    q = _round(dtype)

    def fn(
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
        def c(v):
            return q(v.float()).view(1, -1, 1, 1)

        b = None if bias is None else q(bias.float())
        y = q(F.conv2d(q(x.float()), q(weight.float()), b, stride, padding, dilation, groups))
        if training:
            mean = q(y.mean(dim=(0, 2, 3), keepdim=True))
            var = q(y.var(dim=(0, 2, 3), keepdim=True, unbiased=form == "tutorial"))
            if running_mean is not None:
                with torch.no_grad():
                    unbiased = y.var(dim=(0, 2, 3), unbiased=True)
                    new_mean = q(mean.flatten()).to(running_mean.dtype)
                    running_mean.mul_(1 - momentum).add_(momentum * new_mean)
                    new_var = q(unbiased).to(running_var.dtype)
                    running_var.mul_(1 - momentum).add_(momentum * new_var)
        else:
            mean, var = c(running_mean), c(running_var)
        if form == "tutorial":
            denom = q(torch.sqrt(var) + eps)
        else:
            denom = q(torch.sqrt(var + eps))
        out = q(q(y - mean) / denom)
        if bn_weight is not None:
            out = q(q(out * c(bn_weight)) + c(bn_bias))
        return out.to(x.dtype)

    return Variant(f"lower_{str(dtype).split('.')[-1]}_{form}", fn, form=form, supports=ALL_CONV_BN)


def single_precision(form: str) -> Variant:
    """A correct float32 kernel (the built-in one of `form`) that casts float64 inputs down and
    its output back up: right maths, wrong precision for a float64 case."""
    inner = builtin_variant("eager" if form == "standard" else "fused_tutorial")

    def fn(
        x,
        weight,
        bias=None,
        bn_weight=None,
        bn_bias=None,
        running_mean=None,
        running_var=None,
        **kwargs,
    ):
        def f32(t):
            return None if t is None else t.float()

        mean32, var32 = f32(running_mean), f32(running_var)
        out = inner.fn(
            f32(x), f32(weight), f32(bias), f32(bn_weight), f32(bn_bias), mean32, var32, **kwargs
        )
        if running_mean is not None:
            with torch.no_grad():
                running_mean.copy_(mean32)
                running_var.copy_(var32)
        return out.to(x.dtype)

    return Variant(f"float32_{form}", fn, form=form, supports=ALL_CONV_BN)


def correct(form: str) -> Variant:
    """A correct kernel of `form`: eager F.conv2d + F.batch_norm (standard) or the fused
    tutorial-form kernel (whose zero-variance gradient is the finite limit)."""
    return builtin_variant("eager" if form == "standard" else "fused_tutorial")


def derandomised(max_examples: int, **more) -> settings:
    """Hypothesis settings for a claim about a fixed number of draws: derandomised (the claim must
    not depend on the seed), no database, no deadline, no health checks."""
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        **more,
    )
