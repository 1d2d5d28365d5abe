"""Planted bugs where real (tiled GPU) kernels break: block tails, split reductions merged
afterwards, channel and batch counts past what one program handles, and the calling contexts of
real training. Each passes a suite that draws only tiny cases called one way (every input requiring
grad, grad_out laid out like x, grad mode on), and must fail the suite's size tiers and contexts.

Written in torch the way a Triton or CUDA kernel organises its work (blocks of a channel's values,
programs per chunk, channel groups), each a one-method change of the correct implementations in
`_correct.py`. `GALLERY` maps name -> `Planted`, merged into `bugs.py`'s gallery.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

try:  # loaded by path (pytest verify --variant tests/gallery/bugs.py:ALL) from anywhere
    import tests.gallery  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gallery._correct import DIMS, ArrivalOrder, Explicit, Traced, _Fused, per_channel
from tests.gallery.planted import Planted

BLOCK = 64  # values per block of a channel's reduction
CHUNK = 512  # values per program of a split reduction
CHANNEL_GROUP = 16  # channels per program
GRID_BATCH = 8  # samples per program along the batch
PIXEL_TILE = 1024  # pixels per program along H*W


def _by_channel(y):
    """(C, M): each channel's N*H*W values in (n, h, w) order, as a kernel walks them."""
    return y.transpose(0, 1).reshape(y.shape[1], -1)


def _two_pass(values, count):
    mean = values.sum(dim=1) / count
    centred = values - mean[:, None]
    return mean, centred


class TileTailSkipped(Traced):
    """Blocked reduction over BLOCK-sized tiles whose masked tail is only handled when the channel
    fits one tile: with more than BLOCK values, the last partial tile is dropped from both sums
    (the count still says M)."""

    def batch_stats(self, y):
        values = _by_channel(y)
        m = values.shape[1]
        kept = values if m <= BLOCK else values[:, : m // BLOCK * BLOCK]
        mean = kept.sum(dim=1) / m
        d = kept - mean[:, None]
        return mean, (d * d).sum(dim=1) / (m - 1)


class WelfordMergeWithoutDelta(Traced):
    """Split reduction: each program computes (count, mean, M2) of a CHUNK of a channel, and the
    merge adds the M2s without the between-chunk term n_a n_b (mean_a - mean_b)^2 / n."""

    def batch_stats(self, y):
        values = _by_channel(y)
        m = values.shape[1]
        count = torch.zeros(values.shape[0], dtype=values.dtype)
        mean = torch.zeros_like(count)
        m2 = torch.zeros_like(count)
        for start in range(0, m, CHUNK):
            chunk = values[:, start : start + CHUNK]
            n_b = chunk.shape[1]
            mean_b = chunk.mean(dim=1)
            m2_b = ((chunk - mean_b[:, None]) ** 2).sum(dim=1)
            total = count + n_b
            mean = mean + (mean_b - mean) * n_b / total
            m2 = m2 + m2_b  # missing: + (mean_b - mean_a)^2 * count * n_b / total
            count = total
        return mean, m2 / (m - 1)


class ChannelGroupWraps(Traced):
    """One program per CHANNEL_GROUP channels, indexed modulo the group: channels past the first
    group normalise with the statistics of channel c % CHANNEL_GROUP."""

    def batch_stats(self, y):
        mean, var = super().batch_stats(y)
        index = torch.arange(y.shape[1]) % CHANNEL_GROUP
        return mean[index], var[index]


class BatchPastGrid(Traced):
    """Statistics from a grid that covers GRID_BATCH samples: samples beyond it are not read (the
    count still says N*H*W)."""

    def batch_stats(self, y):
        seen = y[:GRID_BATCH]
        m = y.shape[0] * y.shape[2] * y.shape[3]
        mean = seen.sum(dim=DIMS) / m
        d = seen - per_channel(mean)
        return mean, (d * d).sum(dim=DIMS) / (m - 1)


class PartlyWrittenOutput(Traced):
    """The normalisation pass writes into an output from torch.empty, one program per sample and
    channel over the first PIXEL_TILE pixels: larger images leave the rest unwritten."""

    def affine(self, xhat, bn_weight, bn_bias):
        full = super().affine(xhat, bn_weight, bn_bias)
        out = torch.empty(full.shape, dtype=full.dtype)
        n, c = full.shape[:2]
        flat_out, flat_in = out.view(n, c, -1), full.reshape(n, c, -1)
        flat_out[:, :, :PIXEL_TILE] = flat_in[:, :, :PIXEL_TILE]
        return out


class UninitialisedAccumulator(Explicit):
    """Backward accumulates the bn_weight gradient into a buffer from torch.empty, never zeroed."""

    def bn_param_grads(self, grad_out, xhat):
        accumulator = torch.empty(grad_out.shape[1], dtype=grad_out.dtype)
        accumulator += (grad_out * xhat).sum(dim=DIMS)
        return accumulator, grad_out.sum(dim=DIMS)


class NoGradsWhenInputFrozen(Explicit):
    """Backward returns nothing at all when x needs no gradient (a network's first layer), though
    the weight and the batch-norm parameters do."""

    def backward(self, ctx, c, grad_out):
        if not ctx.needs_input_grad[2]:
            return (None,) * 5
        return super().backward(ctx, c, grad_out)


class GradOutStridedLikeOutput(Explicit):
    """Backward makes grad_out dense if it is not, then indexes it with the output's strides (one
    set of strides for both, as a kernel that assumes grad_out is laid out like its output does):
    right while grad_out is laid out like x, wrong for a contiguous grad_out beside a
    channels_last x, or a channels_last one beside a contiguous x."""

    def bn_backward(self, grad_out, y, mean, std, denom, bn_weight, c):
        dense = grad_out.is_contiguous() or grad_out.is_contiguous(
            memory_format=torch.channels_last
        )
        as_output = torch.as_strided(
            grad_out if dense else grad_out.contiguous(), y.shape, y.stride()
        )
        return super().bn_backward(as_output, y, mean, std, denom, bn_weight, c)


class GraphUnderNoGrad(Traced):
    """Re-enables grad inside (to make its recomputation differentiable): under torch.no_grad()
    the output carries an autograd graph, and every calibration pass keeps its saved tensors."""

    def compute(self, *args):
        with torch.enable_grad():
            return super().compute(*args)


class _TwiceDifferentiable(torch.autograd.Function):
    """`_Fused` without once_differentiable: its backward is built from differentiable ops."""

    forward = staticmethod(_Fused.forward)

    @staticmethod
    def backward(ctx, grad_out):
        grads = ctx.impl.backward(ctx, ctx.c, grad_out)
        return (None, None) + tuple(grads) + (None, None)


class DoubleBackwardSilentlyWrong(Explicit):
    """First derivatives right; the backward is differentiable but treats the saved batch mean and
    denominator as constants, so second derivatives miss how they depend on the input."""

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        return _TwiceDifferentiable.apply(
            self, c, x, weight, bias, bn_weight, bn_bias, running_mean, running_var
        )


class RunningStatsInActivationDtype(Traced):
    """Under autocast (half activations, float32 running statistics) the blended running
    statistics are rounded through the activations' dtype before they are stored. Otherwise
    right: statistics accumulate in float32, as half kernels must."""

    def compute(self, x, *args):
        self.activation_dtype = x.dtype
        return super().compute(x, *args)

    def conv(self, x, weight, bias, c):
        if x.dtype != torch.float16:
            return super().conv(x, weight, bias, c)
        # PyTorch 2.13's CPU half convolution segfaults on some legal geometries: float32, rounded.
        return (
            super()
            .conv(x.float(), weight.float(), None if bias is None else bias.float(), c)
            .to(x.dtype)
        )

    def batch_stats(self, y):
        return super().batch_stats(y.float() if y.dtype == torch.float16 else y)

    def update_running_stats(self, running_mean, running_var, mean, var_unbiased, momentum, n):
        for buffer, stat in ((running_mean, mean), (running_var, var_unbiased)):
            blended = (1 - momentum) * buffer + momentum * stat
            buffer.copy_(blended.to(self.activation_dtype))


OUT = r"out: worst element"
GRADS = r"grad_\w+: worst element"
# A key "a|b|..." is met by any of those properties (tests/test_gallery.py): which of the numeric
# properties first draws the size a bug lives at depends on the derandomised draw.
NUMERIC = "forward|gradients|running_stats|grad_mode|determinism|no_mutation|shift_invariance"


def _at(size: str, result: str) -> str:
    """A report whose size line matches `size` and that then names `result`'s worst element."""
    return r"size: " + size + r"[\s\S]*?" + result


# The wrong numbers a numeric property names (an output, a gradient, a running statistic).
VALUES = r"(out|grad_\w+|running_(mean|var)): worst element"
FIRST_LAYER = r"requires_grad=\[(?!'x')[^\]]*\][\s\S]*?grad_\w+: worst element .* actual 0\.0"

GALLERY = {
    "tile_tail_skipped": Planted(
        TileTailSkipped("standard"),
        {NUMERIC: _at(r"(6[5-9]|[7-9]\d|\d{3,}) values per channel", VALUES)},
    ),
    "welford_merge_without_delta": Planted(
        WelfordMergeWithoutDelta("tutorial"),
        {NUMERIC: _at(r"(51[3-9]|5[2-9]\d|[6-9]\d\d|\d{4,}) values per channel", VALUES)},
    ),
    "channel_group_wraps": Planted(
        ChannelGroupWraps("standard"),
        {NUMERIC: _at(r".*, (1[7-9]|[2-9]\d|\d{3}) channels", VALUES)},
    ),
    "batch_past_grid": Planted(
        BatchPastGrid("tutorial"),
        # (or at the grid tier's batch past 65535)
        {NUMERIC: _at(r"\d+ values per channel \(N=(9|1\d|\d{5,}) x", VALUES)},
    ),
    "partly_written_output": Planted(
        PartlyWrittenOutput("standard"),
        {NUMERIC: OUT + r" .* actual nan,.*uninitialised memory"},
    ),
    "uninitialised_accumulator": Planted(
        UninitialisedAccumulator("tutorial"),
        {"gradients": r"grad_bn_weight: worst element .* actual nan"},
        memory_saving=True,
    ),
    "no_grads_when_input_frozen": Planted(
        NoGradsWhenInputFrozen("standard"),
        {"gradients": FIRST_LAYER},
        memory_saving=True,
    ),
    "grad_out_strided_like_output": Planted(
        GradOutStridedLikeOutput("tutorial"),
        # (a stride-0 grad_out, made dense, is indexed with the output's strides as well)
        {"gradients": r"grad_layout=(contiguous|channels_last|expanded|broadcast)[\s\S]*?" + GRADS},
        memory_saving=True,
    ),
    "graph_under_no_grad": Planted(
        GraphUnderNoGrad("standard"),
        {
            "grad_mode": r"under torch\.(no_grad|inference_mode)\(\) the output "
            r"requires grad"
        },
    ),
    "arrival_order_sum": Planted(
        ArrivalOrder("standard"),
        {"determinism": r"two identical calls differ"},
    ),
    "running_stats_in_activation_dtype": Planted(
        RunningStatsInActivationDtype("standard"),
        {"running_stats": r"param_dtype=float32[\s\S]*?running_(mean|var): worst element"},
    ),
    "double_backward_silently_wrong": Planted(
        DoubleBackwardSilentlyWrong("standard"),
        {
            "second_order": r"gradgradcheck failed \(double backward "
            r"does not raise"
        },
        memory_saving=True,
    ),
}
# Features declared beyond every conv and batch-norm feature.
EXTRA_SUPPORTS = {"running_stats_in_activation_dtype": frozenset({"float16", "autocast"})}
# Properties each of these must pass, though the bug is planted: the first-order checks of a
# kernel whose only fault is its second derivative.
MUST_PASS = {"double_backward_silently_wrong": ("gradients", "gradcheck", "finite_differences")}
