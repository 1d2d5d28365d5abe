"""How fast is the NumPy float64 oracle? Its conv_bn forward + backward against torch float64
CPU forward + backward (F.conv2d + F.batch_norm, autograd) on a (32, 32, 28, 28) input with a
(64, 32, 3, 3) kernel, padding 1. Both benchmarks share one group; the oracle's test also
records torch's time and the ratio in ``extra_info`` (each oracle round follows a timed torch
round, so the per-round ratios, ``time_vs_baseline``, are meaningful on a noisy machine).

The oracle's backward recomputes the convolution (it is a function of the inputs only, like
the tutorial's fused backward), so it does four convolutions where torch does three.

Run: ``pytest verify/benchmarks/bench_oracle.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import reference
from verify.benchmarks.harness import timed

GROUP = "oracle conv_bn fwd+bwd, x(32,32,28,28) w(64,32,3,3) pad 1, float64 CPU"
X_SHAPE, W_SHAPE, PADDING = (32, 32, 28, 28), (64, 32, 3, 3), 1
ROUNDS = 11  # enough for the regression gate's rank test (see verify.benchmarks.harness)


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


def _record_sizes(benchmark):
    benchmark.extra_info["input_bytes"] = int(np.prod(X_SHAPE)) * 8
    benchmark.extra_info["output_bytes"] = X_SHAPE[0] * W_SHAPE[0] * X_SHAPE[2] * X_SHAPE[3] * 8


def test_torch_conv_bn_forward_backward(benchmark):
    benchmark.group = GROUP
    benchmark.extra_info["variant"] = "torch float64"
    _record_sizes(benchmark)
    x, w, grad_out = _inputs()
    gx, gw = benchmark.pedantic(
        _torch_step(x, w, grad_out), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    assert gx.shape == x.shape and gw.shape == w.shape


def test_oracle_conv_bn_forward_backward(benchmark):
    benchmark.group = GROUP
    benchmark.extra_info["variant"] = "oracle"
    _record_sizes(benchmark)
    x, w, grad_out = _inputs()
    measuring = not getattr(benchmark, "disabled", False)
    torch_times: list[float] = []
    grads = benchmark.pedantic(
        _oracle_step(x, w, grad_out),
        setup=timed(_torch_step(x, w, grad_out), torch_times) if measuring else None,
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    assert grads[0].shape == x.shape and grads[1].shape == w.shape
    if not measuring or benchmark.stats is None:
        return  # a plain (non-measuring) run: executed once, no figures
    torch_times = torch_times[-ROUNDS:]  # the warm-up round ran setup too
    oracle_times = benchmark.stats.stats.data
    benchmark.extra_info["torch_median_s"] = float(np.median(torch_times))
    benchmark.extra_info["oracle_over_torch"] = benchmark.stats.stats.median / float(
        np.median(torch_times)
    )
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["baseline"] = "torch float64"
    benchmark.extra_info["time_vs_baseline"] = [
        round(o / t, 6) for o, t in zip(oracle_times, torch_times, strict=False)
    ]
