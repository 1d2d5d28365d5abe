"""How fast is the NumPy float64 oracle? Its conv_bn forward + backward against torch float64
CPU forward + backward (F.conv2d + F.batch_norm, autograd) on a (32, 32, 28, 28) input with a
(64, 32, 3, 3) kernel, padding 1. Both benchmarks share one group; the oracle's test also
records torch's time and the ratio in ``extra_info`` (measured back to back in the same test,
so the ratio is meaningful on a noisy machine).

The oracle's backward recomputes the convolution (it is a function of the inputs only, like
the tutorial's fused backward), so it does four convolutions where torch does three.

Run: ``pytest verify/benchmarks/bench_oracle.py --benchmark-only``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

import reference

GROUP = "oracle conv_bn fwd+bwd, x(32,32,28,28) w(64,32,3,3) pad 1, float64 CPU"
X_SHAPE, W_SHAPE, PADDING = (32, 32, 28, 28), (64, 32, 3, 3), 1
ROUNDS = 5


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(X_SHAPE)
    w = rng.standard_normal(W_SHAPE) / np.sqrt(np.prod(W_SHAPE[1:]))
    grad_out = rng.standard_normal((X_SHAPE[0], W_SHAPE[0], *X_SHAPE[2:]))
    return x, w, grad_out


def _oracle_step(x, w, grad_out):
    def step():
        reference.conv_bn(x, w, padding=PADDING)
        return reference.conv_bn_backward(grad_out, x, w, padding=PADDING)
    return step


def _torch_step(x, w, grad_out):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    gt = torch.tensor(grad_out)

    def step():
        xt.grad = wt.grad = None
        y = F.conv2d(xt, wt, padding=PADDING)
        out = F.batch_norm(y, None, None, training=True, eps=1e-3)
        out.backward(gt)
        return xt.grad, wt.grad
    return step


def _median_seconds(fn, rounds=ROUNDS):
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _record_sizes(benchmark):
    benchmark.extra_info["input_bytes"] = int(np.prod(X_SHAPE)) * 8
    benchmark.extra_info["output_bytes"] = X_SHAPE[0] * W_SHAPE[0] * X_SHAPE[2] * X_SHAPE[3] * 8


def test_torch_conv_bn_forward_backward(benchmark):
    benchmark.group = GROUP
    _record_sizes(benchmark)
    x, w, grad_out = _inputs()
    gx, gw = benchmark.pedantic(_torch_step(x, w, grad_out), rounds=ROUNDS, iterations=1,
                                warmup_rounds=1)
    assert gx.shape == x.shape and gw.shape == w.shape


def test_oracle_conv_bn_forward_backward(benchmark):
    benchmark.group = GROUP
    _record_sizes(benchmark)
    x, w, grad_out = _inputs()
    measuring = not getattr(benchmark, "disabled", False)
    # torch first: right after NumPy's BLAS calls its idle threads can still hold the cores.
    torch_s = _median_seconds(_torch_step(x, w, grad_out)) if measuring else None
    grads = benchmark.pedantic(_oracle_step(x, w, grad_out), rounds=ROUNDS, iterations=1,
                               warmup_rounds=1)
    assert grads[0].shape == x.shape and grads[1].shape == w.shape
    if not measuring or benchmark.stats is None:
        return  # a plain (non-measuring) run: executed once, no figures
    benchmark.extra_info["torch_median_s"] = torch_s
    benchmark.extra_info["oracle_over_torch"] = benchmark.stats.stats.median / torch_s
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
