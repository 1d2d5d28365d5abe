"""fused.tutorial.FusedConvBN2DFunction (the seed tutorial's algorithm, corrected)."""

from __future__ import annotations

import pytest
import torch

from fused.tutorial import FusedConvBN2DFunction, tutorial_variant_fn
from fused.variant import UnsupportedFeatureError, Variant
from tests.fused.helpers import (
    BAD_CALLS,
    assert_close,
    assert_rejected,
    expected,
    make_case,
)
from verify.memory import saved_tensors


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps", [1e-3, 0.5])
def test_matches_oracle(seed, eps):
    tensors, _ = make_case(seed=seed, k=(3, 2))
    x, w = tensors[0], tensors[1]
    g = torch.randn(3, 6, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    exp_out, _, _, exp_grads = expected(tensors, g, form="tutorial", eps=eps)
    out = FusedConvBN2DFunction.apply(x, w, eps)
    assert_close(out, exp_out, what="out")
    gx, gw = torch.autograd.grad(out, (x, w), g)
    assert_close(gx, exp_grads[0], what="grad x")
    assert_close(gw, exp_grads[1], what="grad weight")


def test_gradcheck():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FusedConvBN2DFunction.apply, (x, w))


def test_zero_variance_channel_has_the_finite_limit():
    y = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y[:, 0] = -1.25
    y.requires_grad_()
    eye = torch.eye(2, dtype=torch.float64).view(2, 2, 1, 1)  # conv is the identity
    g = torch.randn_like(y)
    out = FusedConvBN2DFunction.apply(y, eye, 1e-3)
    (gy,) = torch.autograd.grad(out, y, g)
    assert torch.isfinite(gy).all()
    torch.testing.assert_close(gy[:, 0], (g[:, 0] - g[:, 0].mean()) / 1e-3, rtol=1e-10, atol=1e-10)


# The calls of the shared table that pass only x and weight: all the tutorial's function takes.
@pytest.mark.parametrize(
    "name", [n for n, (changes, _) in BAD_CALLS.items() if set(changes) <= {"x", "weight"}]
)
def test_bad_shapes(name):
    assert_rejected(lambda x, weight, **_: FusedConvBN2DFunction.apply(x, weight), name)


def test_saves_only_input_weight_and_stats():
    x = torch.randn(8, 4, 10, 10, requires_grad=True)
    w = torch.randn(16, 4, 3, 3, requires_grad=True)
    saved = saved_tensors(lambda: FusedConvBN2DFunction.apply(x, w), params=[x, w])
    # x, w and two per-channel vectors of 16 values.
    assert saved.storages == 4 and saved.parameter_bytes == (x.numel() + w.numel()) * 4
    assert saved.activation_bytes == 2 * 16 * 4


def test_variant_fn_and_unsupported_features():
    tensors, _ = make_case()
    x, w = tensors[0].detach(), tensors[1].detach()
    torch.testing.assert_close(tutorial_variant_fn(x, w), FusedConvBN2DFunction.apply(x, w))
    stats = dict(
        running_mean=torch.zeros(6, dtype=w.dtype), running_var=torch.ones(6, dtype=w.dtype)
    )
    # Legal calls (an illegal one is a ValueError first, as for every kernel).
    for weight, kwargs in (
        (w, dict(stride=2)),
        (w, dict(padding=1)),
        (w[:, :2], dict(groups=2)),
        (w, dict(training=False, **stats)),
        (w, stats),
        (w, dict(bias=torch.zeros(6, dtype=torch.float64))),
    ):
        with pytest.raises(UnsupportedFeatureError):
            tutorial_variant_fn(x, weight, **kwargs)
    variant = Variant("tutorial", tutorial_variant_fn, form="tutorial")
    torch.testing.assert_close(variant(x, w), FusedConvBN2DFunction.apply(x, w))


def test_once_differentiable():
    tensors, _ = make_case()
    out = FusedConvBN2DFunction.apply(tensors[0], tensors[1])
    g = torch.randn_like(out).requires_grad_()
    (gx,) = torch.autograd.grad(out, tensors[0], g, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()
