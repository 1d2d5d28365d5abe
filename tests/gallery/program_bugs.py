"""Planted bugs that only show inside real programs: each kernel is right when called once, its
output read at once and one backward pass run, and passes a suite that calls it that way; each is
wrong when a program modifies its output in place, runs two backward passes, accumulates
gradients over two steps, or calls the layer again and again (`verify/properties/programs.py`).

Each is a one-method change of the correct implementations in `_correct.py`. `GALLERY` maps
name -> `Planted`, merged into `bugs.py`'s gallery; `OPTIONS` gives a variant's own `supports`
or `limitations`.
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import torch

try:  # loaded by path (pytest verify --variant tests/gallery/bugs.py:ALL) from anywhere
    import tests.gallery  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gallery._correct import (
    DIMS,
    OUTPUT_SAVING_FEATURES,
    Explicit,
    OutputSaving,
    Traced,
    per_channel,
)
from tests.gallery.planted import Planted


# -- in-place ops on the output --------------------------------------------------------------------
class OutputKeptOffTheBooks(OutputSaving):
    """InPlace-ABN's trick without its safety: the output backward recovers the conv output from
    is kept as a plain ctx attribute, out of autograd's sight, so after `ReLU(inplace=True)` or
    `out += identity` backward silently uses the modified values."""

    def save_with_output(self, ctx, tensors, out):
        ctx.save_for_backward(*tensors)
        ctx.out = out

    def saved_with_output(self, ctx):
        return ctx.saved_tensors, ctx.out


# -- several backward passes -----------------------------------------------------------------------
class FastPath(Explicit):
    """A fused kernel's fast path for float32 and half types; float64 takes the reference path,
    as Triton kernels fall back for it (so float64-only checks such as gradcheck never see it)."""

    def fast(self, tensor) -> bool:
        return tensor.dtype != torch.float64


class FreesStatisticsAfterBackward(FastPath):
    """Frees its per-channel statistics as soon as backward has read them, to cut peak memory: a
    second backward pass through the same graph (retain_graph=True) finds them gone."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        if not self.fast(x):
            return super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        ctx.save_for_backward(x, weight, bias, bn_weight)
        ctx.statistics = (mean, std, denom)

    def saved(self, ctx, c):
        x, weight, bias, bn_weight, *_ = ctx.saved_tensors
        if not self.fast(x):
            return super().saved(ctx, c)
        mean, std, denom = ctx.statistics
        del ctx.statistics  # freed early: the graph will not be walked again, it assumes
        return x, weight, bias, bn_weight, self.recompute_conv(x, weight, bias, c), mean, std, denom


class CentresKeptOutputInPlace(FastPath):
    """Keeps the conv output instead of recomputing it (a ctx attribute) and centres it in place
    in backward to save a buffer: a second backward pass centres it again."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        if self.fast(x):
            ctx.y = y

    def saved(self, ctx, c):
        if not hasattr(ctx, "y"):
            return super().saved(ctx, c)
        x, weight, bias, bn_weight, mean, std, denom = ctx.saved_tensors
        y = ctx.y.sub_(per_channel(mean))  # centred in place: d = y - mean, no new buffer
        return x, weight, bias, bn_weight, y, torch.zeros_like(mean), std, denom


# -- gradient accumulation -------------------------------------------------------------------------
class ParameterGradientWorkspace(Explicit):
    """grad_bn_weight and grad_bn_bias come out of one fused reduction into a (2, C) workspace the
    layer keeps between calls (no allocation per step), returned as its two rows. autograd adopts a
    returned row as `.grad`, and the next backward writes into it: accumulated gradients come out
    wrong, and gradients returned by torch.autograd.grad change under the caller's feet."""

    def __init__(self, form: str):
        super().__init__(form)
        self.workspaces: dict = {}

    def bn_param_grads(self, grad_out, xhat):
        key = (xhat.shape[1], xhat.dtype, xhat.device)
        if key not in self.workspaces:
            self.workspaces[key] = torch.empty((2, xhat.shape[1]), dtype=xhat.dtype)
        workspace = self.workspaces[key]
        workspace[0].copy_((grad_out * xhat).sum(dim=DIMS))
        workspace[1].copy_(grad_out.sum(dim=DIMS))
        return workspace[0], workspace[1]


# -- a layer called again and again ----------------------------------------------------------------
class StatisticsOnTheLayer(Explicit):
    """Keeps the batch statistics backward needs on the layer object (the last batch's), not on
    ctx: when a layer is called twice before backward (a shared layer, a recurrent step), the first
    call's backward uses the second call's statistics."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        ctx.save_for_backward(x, weight, bias, bn_weight)
        self.statistics = (mean, std, denom)

    def saved(self, ctx, c):
        x, weight, bias, bn_weight = ctx.saved_tensors
        mean, std, denom = self.statistics
        return x, weight, bias, bn_weight, self.recompute_conv(x, weight, bias, c), mean, std, denom


class PackedWeightCache(FastPath):
    """The fast path repacks the conv weight once per parameter (for its convolution's layout)
    and caches the packed copy by the weight tensor, never checking whether the weight changed:
    after an optimizer step updates the parameters in place, the forward still convolves with the
    old weight (backward uses the new one)."""

    def __init__(self, form: str):
        super().__init__(form)
        self.packed: dict = {}

    def conv(self, x, weight, bias, c):
        if not self.fast(x):
            return super().conv(x, weight, bias, c)
        entry = self.packed.get(id(weight))
        if entry is None or entry[0]() is not weight:
            entry = (weakref.ref(weight), weight.detach().clone())
            self.packed[id(weight)] = entry
        return super().conv(x, entry[1], bias, c)


class OutputBufferWithoutAutograd(Traced):
    """Without autograd (inference, calibration passes), writes its output into one buffer per
    shape that it keeps and returns that buffer: the next call of the same shape overwrites the
    previous call's output."""

    def __init__(self, form: str):
        super().__init__(form)
        self.buffers: dict = {}

    def compute(self, *args):
        out = super().compute(*args)
        if torch.is_grad_enabled():
            return out
        key = (tuple(out.shape), out.dtype, torch.is_inference_mode_enabled())
        if key not in self.buffers:
            self.buffers[key] = torch.empty_like(out)
        return self.buffers[key].copy_(out)


# A program's check names it in its context line; the result it broke follows.
VALUES = r"(out|grad_\w+|running_(mean|var)): worst element"


def _after(context: str, result: str = VALUES) -> str:
    return context + r"[\s\S]*?" + result


IN_PLACE = r"after (ReLU\(inplace=True\)|`out \+= identity`|`out\.mul_\(0\.5\)`) on the output"
SECOND_PASS = r"backward pass"
CALL_OF_ONE_LAYER = r"call \d of \d of one layer"

GALLERY = {
    "output_kept_off_the_books": Planted(
        OutputKeptOffTheBooks("standard"),
        {"programs": _after(IN_PLACE, r"grad_\w+: worst element")},
    ),
    "output_saving_undeclared": Planted(
        OutputSaving("standard"),
        {"programs": r"raised autograd's in-place error[\s\S]*declare limitations"},
    ),
    "frees_statistics_after_backward": Planted(
        FreesStatisticsAfterBackward("tutorial"),
        {"programs": r"program=retain_graph[\s\S]*raised AttributeError in backward"},
        memory_saving=True,
    ),
    "centres_kept_output_in_place": Planted(
        CentresKeptOutputInPlace("standard"),
        {"programs": _after(SECOND_PASS, r"grad_\w+: worst element")},
    ),
    "parameter_gradient_workspace": Planted(
        ParameterGradientWorkspace("tutorial"),
        {"programs": r"grad_bn_(weight|bias): worst element"},
        memory_saving=True,
    ),
    "statistics_on_the_layer": Planted(
        StatisticsOnTheLayer("standard"),
        {"programs": _after(CALL_OF_ONE_LAYER, r"grad_\w+: worst element")},
        memory_saving=True,
    ),
    "packed_weight_cache": Planted(
        PackedWeightCache("tutorial"),
        {"programs": _after(r"call 3 of 3 of one layer, after an optimizer step", r"out: worst")},
        memory_saving=True,
    ),
    "output_buffer_without_autograd": Planted(
        OutputBufferWithoutAutograd("standard"),
        {"programs": _after(r"call [12] of \d of one layer", r"out: worst element")},
    ),
}
# Variants whose own supports or limitations are not the gallery's default.
OPTIONS = {
    "output_kept_off_the_books": dict(supports=OUTPUT_SAVING_FEATURES),
    "output_saving_undeclared": dict(supports=OUTPUT_SAVING_FEATURES),
}
# Each is right in every isolated call: the numeric properties must pass it.
MUST_PASS = {
    name: ("forward", "gradients", "running_stats", "grad_mode", "determinism", "no_mutation")
    for name in GALLERY
}
