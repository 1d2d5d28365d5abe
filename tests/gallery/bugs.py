"""The planted-bug gallery: realistic WRONG fused Conv2d+BatchNorm kernels.

Each bug is a subclass of the correct implementation in `_correct.py` that overrides one stage
with a few wrong lines, wrapped as a `fused.Variant` that declares the features it handles
(including the one its bug lives in, so the suite exercises it).

`EXPECTED[name]` maps each property that must catch the bug to a regex its failure report must
match (the result the bug corrupts, or the scenario it mishandles), so the bug is known to be caught
for the reason it was planted; other properties may fail too (tests/test_gallery.py reports them).
`KNOWN_GAPS[name]` explains a realistic bug the suite does not catch yet; tests/test_gallery.py
marks it xfail(strict=True), so it turns red once the suite learns to catch it.

Run it by hand: pytest verify --variant tests/gallery/bugs.py:ALL
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight
from torch.utils.checkpoint import checkpoint

try:  # loaded by path (pytest verify --variant tests/gallery/bugs.py:ALL) from anywhere
    import tests.gallery  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fused.variant import Variant
from tests.gallery import memory_bugs, program_bugs, size_bugs, tiled_bugs
from tests.gallery._correct import (
    ALL_FEATURES,
    DIMS,
    Explicit,
    Traced,
    per_channel,
    values_per_channel,
)
from tests.gallery.planted import Planted

# ------------------------------------------------------------------------------------------------
# Forward statistics
# ------------------------------------------------------------------------------------------------


class BiasedVarianceTutorial(Traced):
    """Tutorial form normalised with the biased variance (torch.var's old default muddle)."""

    def denominator(self, var_unbiased, n, eps):
        return torch.sqrt(var_unbiased * (n - 1) / n) + eps


class BiasedVarianceWhenCompiled(Traced):
    """Right in eager mode; while torch.compile traces it, the tutorial form normalises with the
    biased variance: a separate path for compilers (a traced "fast" form) that drifted from the
    eager kernel, which every eager-mode property passes."""

    def denominator(self, var_unbiased, n, eps):
        if torch.compiler.is_compiling():
            var_unbiased = var_unbiased * (n - 1) / n
        return super().denominator(var_unbiased, n, eps)


class EpsInsideSqrtTutorial(Traced):
    """Tutorial form with eps inside the square root, as nn.BatchNorm2d does."""

    def denominator(self, var_unbiased, n, eps):
        return torch.sqrt(var_unbiased + eps)


class OnePassVarianceFloat32(Traced):
    """Variance as E[y^2] - E[y]^2 in the input precision: cancels catastrophically when the
    conv output has a large offset and a small spread (float32 loses all digits)."""

    def batch_stats(self, y):
        mean = y.mean(dim=DIMS)
        n = values_per_channel(y)
        biased = (y * y).mean(dim=DIMS) - mean * mean
        return mean, biased.clamp_min(0) * n / (n - 1)


# ------------------------------------------------------------------------------------------------
# Backward terms (hand-written backward)
# ------------------------------------------------------------------------------------------------


class DroppedMeanTerm(Explicit):
    """Backward forgets the gradient through the batch mean."""

    def centre(self, gg):
        return gg


class DroppedVarianceTerm(Explicit):
    """Backward forgets the gradient through the batch variance."""

    def var_term(self, gg, d, std, denom, n):
        return torch.zeros_like(denom)


class NInsteadOfNMinus1Backward(Explicit):
    """Tutorial-form backward differentiates the biased variance (n) although the forward uses
    the unbiased one (n - 1)."""

    def var_term(self, gg, d, std, denom, n):
        return super().var_term(gg, d, std, denom, n) * (n - 1) / n


class BnBiasGradMean(Explicit):
    """grad of bn_bias averaged over (N, H, W) instead of summed, like the forward's mean."""

    def bn_param_grads(self, grad_out, xhat):
        return (grad_out * xhat).sum(dim=DIMS), grad_out.mean(dim=DIMS)


class BnWeightGradMissing(Explicit):
    """Backward returns no gradient for bn_weight (it forgot affine was on)."""

    def bn_param_grads(self, grad_out, xhat):
        return None, grad_out.sum(dim=DIMS)


class ConvBiasGradFromGradOut(Explicit):
    """Conv-bias gradient summed from grad_out instead of the gradient through batch norm: in
    training it must be (numerically) zero, since batch norm cancels any per-channel shift."""

    def conv_backward(self, grad_y, grad_out, x, weight, has_bias, c):
        grad_x, grad_weight, _ = super().conv_backward(grad_y, grad_out, x, weight, has_bias, c)
        return grad_x, grad_weight, grad_out.sum(dim=DIMS) if has_bias else None


# ------------------------------------------------------------------------------------------------
# Running statistics
# ------------------------------------------------------------------------------------------------


class RunningVarBiased(Traced):
    """running_var updated with the biased batch variance (nn.BatchNorm2d uses the unbiased)."""

    def update_running_stats(self, running_mean, running_var, mean, var_unbiased, momentum, n):
        super().update_running_stats(
            running_mean, running_var, mean, var_unbiased * (n - 1) / n, momentum, n
        )


class MomentumReversed(Traced):
    """Momentum applied the wrong way round: new = momentum * old + (1 - momentum) * batch."""

    def update_running_stats(self, running_mean, running_var, mean, var_unbiased, momentum, n):
        running_mean.mul_(momentum).add_((1 - momentum) * mean)
        running_var.mul_(momentum).add_((1 - momentum) * var_unbiased)


class NaiveCheckpoint(Traced):
    """Standard form: F.batch_norm wrapped in torch.utils.checkpoint with the running buffers
    passed in, so the recomputation in backward updates the running statistics a second time."""

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        def conv_bn(x, weight, bias, bn_weight, bn_bias):
            return F.batch_norm(
                self.conv(x, weight, bias, c),
                running_mean,
                running_var,
                bn_weight,
                bn_bias,
                c.training,
                c.momentum,
                c.eps,
            )

        return checkpoint(conv_bn, x, weight, bias, bn_weight, bn_bias, use_reentrant=False)


class UpdateBeforeValidation(Traced):
    """Checks shapes the conv needs, but not the lengths of bn_weight / bn_bias / running stats:
    it updates the running statistics, and only then fails on a bad bn_weight (in the affine) or
    running_var (in its update), leaving half-updated state behind."""

    def validate(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1] * c.groups:
            raise ValueError(f"bad shapes {tuple(x.shape)}, {tuple(weight.shape)}")
        if not c.training and running_mean is None:
            raise ValueError("eval mode needs running statistics")
        if c.training:
            self.check_values_per_channel(x, weight, c)


# ------------------------------------------------------------------------------------------------
# Eval branch
# ------------------------------------------------------------------------------------------------


class EvalUsesBatchStats(Traced):
    """Eval mode normalises with the batch statistics instead of the running ones."""

    def eval_normalise(self, y, running_mean, running_var, c):
        mean, var = self.batch_stats(y)
        denom = self.denominator(var, values_per_channel(y), c.eps)
        return (y - per_channel(mean)) / per_channel(denom)


class EvalBackwardAsTraining(Explicit):
    """Backward applies the training formula (mean and variance terms) in eval mode too, where the
    statistics are constants."""

    def bn_backward(self, grad_out, y, mean, std, denom, bn_weight, c):
        if not c.training:
            c = dataclasses.replace(c, training=True)
            std = denom - c.eps if self.form == "tutorial" else std
        return super().bn_backward(grad_out, y, mean, std, denom, bn_weight, c)


# ------------------------------------------------------------------------------------------------
# Conv parameters in the backward recompute
# ------------------------------------------------------------------------------------------------


class GradWeightFirstGroup(Explicit):
    """grad_weight computed as if groups were 1, feeding every group the first group's input
    channels (the shapes work out, the numbers do not)."""

    def conv_backward(self, grad_y, grad_out, x, weight, has_bias, c):
        grad_x, _, grad_bias = super().conv_backward(grad_y, grad_out, x, weight, has_bias, c)
        first_group = x[:, : weight.shape[1]]
        grad_weight = conv2d_weight(
            first_group,
            weight.shape,
            grad_y,
            stride=c.stride,
            padding=c.padding,
            dilation=c.dilation,
            groups=1,
        )
        return grad_x, grad_weight, grad_bias


class PaddingDroppedInRecompute(Explicit):
    """The conv recomputed in backward forgets the padding: silently wrong where the output shape
    still matches (e.g. stride larger than the padding), a crash elsewhere."""

    def recompute_conv(self, x, weight, bias, c):
        return self.conv(x, weight, bias, dataclasses.replace(c, padding=(0, 0)))


# ------------------------------------------------------------------------------------------------
# Conv bias, memory layout, precision
# ------------------------------------------------------------------------------------------------


class ConvBiasDropped(Traced):
    """Drops the conv bias ("batch norm cancels it anyway"): true for the training output, wrong
    for the running mean and the eval output."""

    def conv(self, x, weight, bias, c):
        return super().conv(x, weight, None, c)


class AssumesContiguous(Traced):
    """Reinterprets x's memory as contiguous NCHW (as_strided with contiguous strides): wrong for
    channels_last and for strided views."""

    def conv(self, x, weight, bias, c):
        n, ch, h, w = x.shape
        x = x.as_strided(x.shape, (ch * h * w, h * w, w, 1))
        return super().conv(x, weight, bias, c)


class Float64InFloat32(Traced):
    """A float64 kernel that silently computes in float32 and casts back."""

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        low = [None if t is None else t.float() for t in (x, weight, bias, bn_weight, bn_bias)]
        stats = [None if t is None else t.float() for t in (running_mean, running_var)]
        out = super().compute(*low, *stats, c)
        with torch.no_grad():
            for buffer, updated in zip((running_mean, running_var), stats, strict=True):
                if buffer is not None:
                    buffer.copy_(updated)
        return out.to(x.dtype)


class LowPrecisionStatistics(Traced):
    """Batch statistics accumulated in a half type (float16 or bfloat16), then cast back."""

    def __init__(self, form, half):
        super().__init__(form)
        self.half = half

    def batch_stats(self, y):
        low = y.to(self.half)
        mean = low.mean(dim=DIMS)
        d = low - per_channel(mean)
        var = (d * d).sum(dim=DIMS) / (values_per_channel(y) - 1)
        return mean.to(y.dtype), var.to(y.dtype)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


class NaNAtZeroVariance(Traced):
    """Tutorial form through plain torch.sqrt: autograd's d sqrt(v)/dv = inf at v = 0 times
    dv/dy = 0 gives NaN gradients for a constant channel (the published tutorial's failure)."""

    def denominator(self, var_unbiased, n, eps):
        return torch.sqrt(var_unbiased) + eps


class NoSingleValueCheck(Traced):
    """No check for a single value per channel: training returns garbage instead of raising."""

    def check_values_per_channel(self, x, weight, c):
        pass


# ------------------------------------------------------------------------------------------------
# Cheating, mutation, memory
# ------------------------------------------------------------------------------------------------


class CachesByShape(Traced):
    """Benchmark cheat: remembers the output for each input shape and replays it (keeping the live
    autograd graph so the call still looks differentiable)."""

    def __init__(self, form):
        super().__init__(form)
        self.cache = {}

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        out = super().compute(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c)
        key = (tuple(x.shape), tuple(weight.shape), x.dtype, str(c))
        cached = self.cache.setdefault(key, out.detach().clone())
        return out + (cached - out).detach()


class ScalesGradOutInPlace(Explicit):
    """Backward folds bn_weight into grad_out in place to save an NCHW buffer: the caller's
    grad_out is overwritten (the gradients themselves come out right)."""

    def scale_grad(self, grad_out, bn_weight):
        return grad_out if bn_weight is None else grad_out.mul_(per_channel(bn_weight))


class SavesConvOutput(Explicit):
    """Claims to save memory but keeps the conv output for backward instead of recomputing it."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        ctx.save_for_backward(x, weight, bias, bn_weight, mean, std, denom, y)

    def saved(self, ctx, c):
        x, weight, bias, bn_weight, mean, std, denom, y = ctx.saved_tensors
        return x, weight, bias, bn_weight, y, mean, std, denom


# ------------------------------------------------------------------------------------------------
# The gallery
# ------------------------------------------------------------------------------------------------

# What a report says when a property catches a bug for the right reason (regexes searched in the
# failure text): the result the bug corrupts, compared with the oracle element by element.
OUT = r"out: worst element"
GRAD_X_W = r"grad_(x|weight): worst element"
STATS = r"running_(mean|var): worst element"
DIRECTIONAL = r"directional derivative: backward gives"
GRADCHECK = r"gradcheck failed"
SAME_SHAPES = r"call [12] of 2 with the same shapes and new values\s+out: worst element"

# name -> the planted bug
# Every variant declares all conv and batch-norm features (the buggy one among them).
_GALLERY = {
    # forward statistics
    "biased_var_tutorial": Planted(
        BiasedVarianceTutorial("tutorial"),
        # The biased variance corrupts the output first: gradients may report it before grad_x.
        {"forward": OUT, "gradients": r"(out|grad_(x|weight)): worst element"},
    ),
    "eps_inside_sqrt_tutorial": Planted(
        EpsInsideSqrtTutorial("tutorial"),
        {"forward": OUT, "gradients": GRAD_X_W},
    ),
    "one_pass_variance": Planted(
        OnePassVarianceFloat32("standard"),
        {
            "forward": r"(out|running_var): worst element",
            "gradients": r"(out|grad_\w+|running_var): worst element",
            "running_stats": STATS,
        },
    ),
    # backward terms
    "dropped_mean_term": Planted(
        DroppedMeanTerm("standard"),
        {"gradients": GRAD_X_W, "finite_differences": DIRECTIONAL, "gradcheck": GRADCHECK},
        memory_saving=True,
    ),
    "dropped_variance_term": Planted(
        DroppedVarianceTerm("tutorial"),
        {"gradients": GRAD_X_W, "finite_differences": DIRECTIONAL, "gradcheck": GRADCHECK},
        memory_saving=True,
    ),
    "n_instead_of_n_minus_1_backward": Planted(
        NInsteadOfNMinus1Backward("tutorial"),
        {"gradients": GRAD_X_W, "finite_differences": DIRECTIONAL, "gradcheck": GRADCHECK},
        memory_saving=True,
    ),
    "bn_bias_grad_mean": Planted(
        BnBiasGradMean("standard"),
        {"gradients": r"grad_bn_bias: worst element", "finite_differences": DIRECTIONAL},
        memory_saving=True,
    ),
    "bn_weight_grad_missing": Planted(
        BnWeightGradMissing("tutorial"),
        {
            "gradients": r"grad_bn_weight: worst element .* actual 0\.0",
            "finite_differences": DIRECTIONAL,
            "gradcheck": GRADCHECK,
        },
        memory_saving=True,
    ),
    "conv_bias_grad_nonzero": Planted(
        ConvBiasGradFromGradOut("standard"),
        {"gradients": r"grad_bias: worst element", "finite_differences": DIRECTIONAL},
        memory_saving=True,
    ),
    # running statistics
    "running_var_biased": Planted(
        RunningVarBiased("standard"),
        {"forward": r"running_var: worst element", "running_stats": r"running_var: worst element"},
    ),
    "momentum_reversed": Planted(
        MomentumReversed("tutorial"),
        {"forward": STATS, "running_stats": STATS},
    ),
    # Only calls with a backward (gradients, determinism) see the second update.
    "naive_checkpoint_double_update": Planted(
        NaiveCheckpoint("standard"),
        {"gradients|determinism": STATS},
    ),
    "update_before_validation": Planted(
        UpdateBeforeValidation("standard"),
        {
            "bad_inputs": r"(was modified although the call raised"
            r"|scenario '(bn_weight|running_stats)_length': "
            r"no exception)"
        },
    ),
    # eval branch
    "eval_uses_batch_stats": Planted(
        EvalUsesBatchStats("tutorial"),
        {
            "forward": OUT,
            "running_stats": r"eval step after \d+ training "
            r"steps\s+out: worst element",
        },
    ),
    "eval_backward_as_training": Planted(
        EvalBackwardAsTraining("standard"),
        {"gradients": GRAD_X_W, "finite_differences": DIRECTIONAL},
        memory_saving=True,
    ),
    # conv parameters in the backward
    "grad_weight_first_group": Planted(
        GradWeightFirstGroup("standard"),
        {"gradients": r"groups=[23].*\s+grad_weight: worst element"},
        memory_saving=True,
    ),
    "padding_dropped_in_recompute": Planted(
        PaddingDroppedInRecompute("tutorial"),
        {
            "gradients": r"(grad_\w+: worst element|raised RuntimeError in (forward|backward) on a "
            r"legal case: Calculated padded input size|must match the size)"
        },
        memory_saving=True,
    ),
    # conv bias dropped
    "conv_bias_dropped": Planted(
        ConvBiasDropped("standard"),
        {
            "forward": r"(running_mean|out): worst element",
            "running_stats": r"running_mean: worst element",
            "shift_invariance": r"shift the conv output through the conv bias",
        },
    ),
    # memory layout
    "assumes_contiguous": Planted(
        AssumesContiguous("standard"),
        {"forward": r"layout=(channels_last|strided).*\s+out: worst element"},
    ),
    # precision
    "float64_in_float32": Planted(
        Float64InFloat32("tutorial"),
        {
            "forward": r"dtype=float64.*\s+out: worst element",
            "running_stats": r"dtype=float64.*\s+.*\s+running_(mean|var): worst",
        },
    ),
    "float16_statistics": Planted(
        LowPrecisionStatistics("standard", torch.float16),
        {"forward": r"dtype=float32.*\s+out: worst element", "gradients": GRAD_X_W},
    ),
    "bfloat16_statistics": Planted(
        LowPrecisionStatistics("tutorial", torch.bfloat16),
        {"forward": r"dtype=float32.*\s+out: worst element", "gradients": GRAD_X_W},
    ),
    # degenerate inputs
    "nan_at_zero_variance": Planted(
        NaNAtZeroVariance("tutorial"),
        {"gradients": r"grad_\w+: worst element .* actual nan"},
    ),
    "no_single_value_check": Planted(
        NoSingleValueCheck("standard"),
        {"bad_inputs": r"scenario 'single_value_per_channel': no exception"},
    ),
    # cheating, mutation, memory
    "caches_by_shape": Planted(
        CachesByShape("tutorial"),
        {
            "no_mutation": r"call 2 of 2 with the same shapes and new values\s+"
            r"out: worst element"
        },
    ),
    "scales_grad_out_in_place": Planted(
        ScalesGradOutInPlace("standard"),
        {"no_mutation": r"modified its input\(s\) \['grad_out'\]"},
        memory_saving=True,
    ),
    "saves_conv_output": Planted(
        SavesConvOutput("tutorial"),
        {"saved_memory": r"saves \d+ activation bytes for backward"},
        memory_saving=True,
    ),
    # compiled path
    "biased_variance_when_compiled": Planted(
        BiasedVarianceWhenCompiled("tutorial"),
        {"compile": r"(out|grad_\w+): worst element"},
    ),
}

_GALLERY.update(tiled_bugs.GALLERY)
_GALLERY.update(size_bugs.GALLERY)
_GALLERY.update(program_bugs.GALLERY)
_GALLERY.update(memory_bugs.GALLERY)

# Features beyond ALL_FEATURES a bug declares, so that the property it must fail runs on it.
EXTRA_SUPPORTS = dict(
    tiled_bugs.EXTRA_SUPPORTS,
    **size_bugs.EXTRA_SUPPORTS,
    biased_variance_when_compiled=frozenset({"compile"}),
)

ALL = [
    Variant(
        name,
        bug.impl,
        form=bug.form,
        memory_saving=bug.memory_saving,
        **{
            "supports": ALL_FEATURES | EXTRA_SUPPORTS.get(name, frozenset()),
            **program_bugs.OPTIONS.get(name, {}),
        },
    )
    for name, bug in _GALLERY.items()
]
# name -> {property: regex its failure report must match}
EXPECTED = {name: dict(bug.caught_by) for name, bug in _GALLERY.items()}
# Realistic bugs the suite misses today (tests/test_gallery.py: xfail, strict).
KNOWN_GAPS: dict = {}
# name -> properties the bug must not trip (its planted fault is elsewhere).
MUST_PASS = dict(
    tiled_bugs.MUST_PASS,
    **size_bugs.MUST_PASS,
    **program_bugs.MUST_PASS,
    **memory_bugs.MUST_PASS,
    biased_variance_when_compiled=("forward", "gradients", "running_stats"),
)
# name -> {property: smallest worst error / bound}: bugs that must fail by a wide margin, not
# scrape past the bound.
# (running_stats catches the one-pass variance too, but its derandomised draw reaches only 1.7x.)
MARGINS = {"one_pass_variance": {"forward": 100.0, "gradients": 100.0}}
