"""The fused Conv2d + BatchNorm2d in plain differentiable torch ops, for `torch.compile`.

In eager mode the memory saving comes from `fused.memory_saving`'s autograd.Function, which decides
by hand what backward keeps (the conv input) and recomputes (the conv). Under `torch.compile` that
decision belongs to AOTAutograd's partitioner, which sees the whole network's forward and
backward: it recomputes cheap elementwise work instead of saving it, fuses what is left, and with
`torch._functorch.config.activation_memory_budget` trades recompute for memory on request. An
autograd.Function is a fixed block in that graph: its forward and backward are traced as they are
written (with their in-place writes turned into copies), and the budget cannot touch what it saves.
So under compile the layer states the same numbers in ops the partitioner sees through; the
measurements behind this choice are in docs/performance.md ("Under torch.compile").

`traceable_kernel` is the kernel the fused entry points (`fused.entry.conv_bn_entry`) trace
instead of their own while torch.compile traces them; `conv_bn_traceable` is its entry point. It
computes the same function as `fused.memory_saving.memory_saving_conv_bn`: the standard form through
`F.batch_norm` (what nn.BatchNorm2d compiles to), the tutorial form (and the standard one with
momentum=None) in elementwise ops and `var_mean`, statistics in the statistics dtype (float32 for
half inputs), running statistics and `num_batches_tracked` updated in place (momentum=None:
cumulative average, without reading the counter back to Python, which would break the graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fused import batch_norm_math as bnm
from fused.arguments import ConvBNCall, ConvConfig
from fused.dtypes import stat_dtype
from fused.entry import conv_bn_entry
from fused.native_conv import cpu_half

__all__ = ["conv_bn_traceable", "traceable_kernel"]

_REDUCE = (0, 2, 3)


def _conv(x, weight, bias, conv: ConvConfig):
    if cpu_half(x):
        # Same route as the eager kernel (see fused.native_conv): CPU half convs in float32;
        # the result stays float32 until the normalised output is rounded once.
        x, weight = x.float(), weight.float()
        bias = None if bias is None else bias.float()
    return F.conv2d(x, weight, bias, *conv)


def _tutorial_train_invstd(var_biased: Tensor, n: int, eps: float) -> Tensor:
    # 1 / (sqrt(unbiased var) + eps), differentiable at a zero-variance channel: autograd's sqrt
    # has an infinite slope at 0 (times a zero upstream gradient: NaN); the contract's finite limit
    # is the gradient with the variance term dropped, which the double `where` gives.
    unbiased = var_biased * (n / (n - 1))
    positive = unbiased > 0
    std = torch.where(positive, torch.sqrt(torch.where(positive, unbiased, 1.0)), 0.0)
    return torch.reciprocal(std + eps)


def traceable_kernel(call: ConvBNCall) -> Tensor:
    """`fused.memory_saving.memory_saving_conv_bn`'s function, autograd through plain ops (saves
    what autograd or the compiler's partitioner chooses, not only the conv input). Counts the batch
    in `num_batches_tracked` itself, last, without reading the count back to Python."""
    out = _conv_bn(call)
    counter = call.num_batches_tracked
    if call.norm.training and counter is not None:
        with torch.no_grad():
            counter.add_(1)
    return out


def _conv_bn(call: ConvBNCall) -> Tensor:
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var, counter, conv, norm = call
    training, momentum, eps, form = norm
    y = _conv(x, weight, bias, conv)
    if form == "standard" and (momentum is not None or running_mean is None):
        # nn.BatchNorm2d's own op: inductor decomposes it with a dedicated backward (two
        # per-channel reductions and one elementwise pass), which autograd through var_mean does
        # not match (the compiled MNIST network ran 5-7% slower that way).
        # In the input dtype, as the eager kernel rounds its conv output (F.batch_norm takes
        # half activations with half or float32 parameters and keeps its statistics in float32).
        # Dense bn_weight/bn_bias: PyTorch 2.13's CPU batch-norm backward misreads strided ones
        # (docs/upstream-bugs.md; the eager baseline does the same).
        out = F.batch_norm(
            y.to(x.dtype),
            running_mean,
            running_var,
            None if bn_weight is None else bn_weight.contiguous(),
            None if bn_bias is None else bn_bias.contiguous(),
            training,
            0.0 if momentum is None else momentum,
            eps,
        )
        return out.to(x.dtype)
    sd = stat_dtype(x.dtype)
    if training:
        n = y.numel() // y.shape[1]
        var, mean = torch.var_mean(y.to(sd), dim=_REDUCE, correction=0)
        invstd = (
            bnm.train_invstd(var, n, form, eps)
            if form == "standard"
            else _tutorial_train_invstd(var, n, eps)
        )
        if running_mean is not None:
            with torch.no_grad():
                # momentum=None: 1 / the count including this batch, as a tensor in the
                # statistics dtype (no read back to Python, which would break the graph).
                factor = momentum if momentum is not None else 1.0 / (counter.to(mean.dtype) + 1)
                bnm.update_running_stats(
                    running_mean, running_var, mean.detach(), var.detach(), n, factor
                )
    else:
        mean = running_mean.to(sd)
        invstd = bnm.eval_invstd(running_var.to(sd), form, eps)
    scale = invstd if bn_weight is None else invstd * bn_weight.to(sd)
    out = (y.to(sd) - bnm.per_channel(mean)) * bnm.per_channel(scale)
    if bn_bias is not None:
        out = out + bnm.per_channel(bn_bias.to(sd))
    return out.to(x.dtype)


conv_bn_traceable = conv_bn_entry(
    traceable_kernel,
    name="conv_bn_traceable",
    doc=traceable_kernel.__doc__ or "",
    counts_batches=True,
)
