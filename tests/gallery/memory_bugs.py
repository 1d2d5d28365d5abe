"""Planted bugs of "memory-saving" kernels that keep activation memory anyway, by routes
saved_tensors_hooks never see: what they pass to `ctx.save_for_backward` is exactly what the
correct kernel saves (its input, the weights and per-channel statistics), so the saved-bytes
figure is clean, and every number they compute is right. Each keeps the conv output (or more)
alive until backward, or beyond it, another way: a plain ctx attribute, a closure, a hook on the
output, a float64 copy for precision, a module-level cache. Real programs count on the memory
being freed; the `saved_memory` property's kept figure (the CPU allocator's events) must catch
them.

Each is a one-method change of `_correct.Explicit`. `GALLERY` maps name -> `Planted`, merged into
`bugs.py`'s gallery.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:  # loaded by path (pytest verify --variant tests/gallery/bugs.py:ALL) from anywhere
    import tests.gallery  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gallery._correct import DIMS, Explicit, per_channel
from tests.gallery.planted import Planted


def _saved_without_conv(ctx):
    """What the correct kernel saved: (x, weight, bias, bn_weight, mean, std, denom)."""
    return ctx.saved_tensors


class ConvOutputOnCtx(Explicit):
    """Saves the right tensors, then skips the recompute "while it is at hand": the conv output
    is kept as a plain ctx attribute until backward."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        ctx.y = y

    def saved(self, ctx, c):
        x, weight, bias, bn_weight, mean, std, denom = _saved_without_conv(ctx)
        return x, weight, bias, bn_weight, ctx.y, mean, std, denom


class LazyRecomputeClosure(Explicit):
    """A "lazy recompute" function on ctx that backward calls for the conv output: it was written
    in forward, where `y` was in scope, and returns the captured tensor instead of recomputing."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        ctx.conv_output = lambda: y

    def saved(self, ctx, c):
        x, weight, bias, bn_weight, mean, std, denom = _saved_without_conv(ctx)
        return x, weight, bias, bn_weight, ctx.conv_output(), mean, std, denom


class NormalisedInFloat64OnCtx(Explicit):
    """Keeps xhat in float64 on ctx "for an accurate bn_weight gradient": twice the conv output's
    bytes of a float32 kernel, alive until backward."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        ctx.xhat64 = ((y - per_channel(mean)) / per_channel(denom)).double()

    def backward(self, ctx, c, grad_out):
        grads = list(super().backward(ctx, c, grad_out))
        if grads[3] is not None:
            grads[3] = (grad_out.double() * ctx.xhat64).sum(dim=DIMS).to(grad_out.dtype)
        return tuple(grads)


class MonitoringHookKeepsConvOutput(Explicit):
    """A monitoring hook on the output's gradient records the conv output's largest magnitude at
    backward time (dead-channel statistics); its closure keeps the conv output alive with the
    output until backward, outside ctx altogether."""

    def compute(self, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c):
        conv_outputs = []
        self.conv_outputs = conv_outputs
        out = super().compute(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, c)
        y = conv_outputs.pop()
        if out.requires_grad:

            def record(grad):
                self.largest_conv_output = float(y.detach().abs().max())

            out.register_hook(record)
        return out

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        self.conv_outputs.append(y)


# The most recent call's conv output and the token of the ctx it belongs to: a backward that
# runs right after its own forward (the common case) reuses it instead of recomputing the conv.
_LAST_CONV_OUTPUT: dict = {}


class CachesLastConvOutput(Explicit):
    """Keeps the last conv output in a module-level cache for its backward to reuse, and never
    clears it: one activation outlives every training step (the next call replaces it)."""

    def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
        super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
        ctx.token = object()
        _LAST_CONV_OUTPUT["y"] = (ctx.token, y)

    def saved(self, ctx, c):
        token, y = _LAST_CONV_OUTPUT.get("y", (None, None))
        if token is not ctx.token:
            return super().saved(ctx, c)
        x, weight, bias, bn_weight, mean, std, denom = _saved_without_conv(ctx)
        return x, weight, bias, bn_weight, y, mean, std, denom


KEPT = r"keeps \d+ bytes alive for backward after the forward returned"
OUTLIVES = r"still holds \d+ bytes allocated during the call .*after backward ran"

GALLERY = {
    "conv_output_on_ctx": Planted(
        ConvOutputOnCtx("tutorial"),
        {"saved_memory": KEPT},
        memory_saving=True,
    ),
    "lazy_recompute_closure": Planted(
        LazyRecomputeClosure("standard"),
        {"saved_memory": KEPT},
        memory_saving=True,
    ),
    "normalised_in_float64_on_ctx": Planted(
        NormalisedInFloat64OnCtx("standard"),
        {"saved_memory": KEPT},
        memory_saving=True,
    ),
    "monitoring_hook_keeps_conv_output": Planted(
        MonitoringHookKeepsConvOutput("tutorial"),
        {"saved_memory": KEPT},
        memory_saving=True,
    ),
    "caches_last_conv_output": Planted(
        CachesLastConvOutput("tutorial"),
        {"saved_memory": OUTLIVES},
        memory_saving=True,
    ),
}
# Their only fault is the memory they keep: every number is right.
MUST_PASS = {
    name: (
        "forward",
        "gradients",
        "running_stats",
        "determinism",
        "no_mutation",
        "gradcheck",
        "finite_differences",
    )
    for name in GALLERY
}
