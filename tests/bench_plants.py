"""Planted regressions of `fused_standard` for the regression gate's evidence
(tests/test_gate_evidence.py).

Each variant keeps the name ``fused_standard`` so that a benchmark run with it
(``pytest verify/benchmarks --benchmark-only --variant tests/bench_plants.py:SLOW``) has the same
benchmark names as a run of the built-in variants, and the gate compares them one to one.

* ``SLOW``: real extra work, not a sleep (a sleep would not compete for the CPU the way a slower
  kernel does): each call also runs the forward pass once more, without autograd, on the first
  `SLOW_FRACTION` of the batch. With the whole batch (1.0) a training step of the MNIST network
  or the ResNet stage takes 25-30% longer (0.8 gave about 21%, recorded as well).
* ``HUNGRY``: the same kernel on a copy of its input (multiplied by per-channel ones, so the result
  is unchanged): the kernel keeps the copy for backward, while the network still keeps the
  original (the in-place ReLU before it saves it), so one more input-sized buffer per call is
  saved; on the MNIST network about 25% more saved bytes.
"""

from dataclasses import replace

import torch

from fused.registry import builtin_variant

_BUILTIN = builtin_variant("fused_standard")
fused_standard_fn = _BUILTIN.fn

SLOW_FRACTION = 1.0


def slow_conv_bn(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    **kwargs,
):
    with torch.no_grad():
        k = max(2, round(SLOW_FRACTION * x.shape[0]))
        fused_standard_fn(x[:k], weight, bias, bn_weight, bn_bias, **kwargs)
    return fused_standard_fn(
        x, weight, bias, bn_weight, bn_bias, running_mean, running_var, **kwargs
    )


def hungry_conv_bn(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    **kwargs,
):
    ones = torch.ones(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
    return fused_standard_fn(
        x * ones, weight, bias, bn_weight, bn_bias, running_mean, running_var, **kwargs
    )


# Same name as the built-in, so that a comparison pairs each plant with it.
SLOW = replace(_BUILTIN, fn=slow_conv_bn)
HUNGRY = replace(_BUILTIN, fn=hungry_conv_bn)
