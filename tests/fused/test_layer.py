"""fused.layer.FusedConvBN2d against nn.Conv2d + nn.BatchNorm2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fused.layer import FusedConvBN2d

KEYS = {
    "weight",
    "bias",
    "bn_weight",
    "bn_bias",
    "running_mean",
    "running_var",
    "num_batches_tracked",
}


def pair_and_layer(*, bias=True, affine=True, track=True, momentum=0.1, **conv_kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=bias, **conv_kw).double()
    bn = nn.BatchNorm2d(
        6, eps=1e-3, momentum=momentum, affine=affine, track_running_stats=track
    ).double()
    layer = FusedConvBN2d(
        4,
        6,
        3,
        bias=bias,
        momentum=momentum,
        affine=affine,
        track_running_stats=track,
        form="standard",
        dtype=torch.float64,
        **conv_kw,
    )
    with torch.no_grad():
        layer.weight.copy_(conv.weight)
        if bias:
            layer.bias.copy_(conv.bias)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
            layer.bn_weight.copy_(bn.weight)
            layer.bn_bias.copy_(bn.bias)
    return nn.Sequential(conv, bn), layer


@pytest.mark.parametrize(
    "affine,track,momentum",
    [(True, True, 0.1), (False, True, None), (True, False, 0.1), (False, False, 0.3)],
)
def test_matches_conv_batchnorm(affine, track, momentum):
    ref, layer = pair_and_layer(
        affine=affine, track=track, momentum=momentum, stride=2, padding=1, groups=2
    )
    params = dict(ref.named_parameters())
    for mode in ("train", "train", "eval", "train", "eval"):
        ref.train(mode == "train")
        layer.train(mode == "train")
        x = torch.randn(3, 4, 9, 8, dtype=torch.float64, requires_grad=True)
        out_ref = ref(x)
        out = layer(x)
        torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
        g = torch.randn_like(out)
        gr = torch.autograd.grad(out_ref, [x] + list(params.values()), g)
        gl = torch.autograd.grad(out, [x] + [p for p in layer.parameters()], g)
        for a, b in zip(gl, gr, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        if track:
            torch.testing.assert_close(layer.running_mean, ref[1].running_mean)
            torch.testing.assert_close(layer.running_var, ref[1].running_var)
            assert int(layer.num_batches_tracked) == int(ref[1].num_batches_tracked)


def test_names_and_state_dict_round_trip():
    layer = FusedConvBN2d(3, 5, (3, 2), bias=True, form="standard")
    assert set(layer.state_dict()) == KEYS
    assert {n for n, _ in layer.named_parameters()} == {"weight", "bias", "bn_weight", "bn_bias"}
    layer.train()
    layer(torch.randn(2, 3, 6, 6))
    other = FusedConvBN2d(3, 5, (3, 2), bias=True, form="standard")
    other.load_state_dict(layer.state_dict())
    for k, v in layer.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    assert int(other.num_batches_tracked) == 1
    bare = FusedConvBN2d(3, 5, 3, affine=False, track_running_stats=False)
    assert set(bare.state_dict()) == {"weight"}


def test_defaults_reset_and_repr():
    layer = FusedConvBN2d(2, 4, 3)
    assert layer.form == "tutorial" and layer.bias is None
    assert torch.equal(layer.bn_weight, torch.ones(4)) and torch.equal(
        layer.bn_bias, torch.zeros(4)
    )
    layer(torch.randn(3, 2, 5, 5))
    assert int(layer.num_batches_tracked) == 1 and not torch.equal(
        layer.running_mean, torch.zeros(4)
    )
    layer.reset_running_stats()
    assert torch.equal(layer.running_mean, torch.zeros(4))
    assert torch.equal(layer.running_var, torch.ones(4))
    assert int(layer.num_batches_tracked) == 0
    bound = 1 / (2 * 9) ** 0.5
    assert layer.weight.abs().max() <= bound
    text = repr(layer)
    assert "2, 4, kernel_size=(3, 3)" in text and "form='tutorial'" in text
    with pytest.raises(ValueError):
        FusedConvBN2d(2, 4, 3, form="other")


def test_tutorial_form_eval_uses_running_stats():
    layer = FusedConvBN2d(2, 3, 3, dtype=torch.float64).eval()
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    y = torch.nn.functional.conv2d(x, layer.weight)
    ref = (y - layer.running_mean[:, None, None]) / (layer.running_var.sqrt() + 1e-3)[:, None, None]
    torch.testing.assert_close(layer(x), ref, rtol=1e-12, atol=1e-12)
    assert int(layer.num_batches_tracked) == 0
