"""fused.fuse: fuse_conv_bn gives the same numbers as the unfused model, and loads its weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
from torch import nn

from fused.fuse import fuse_conv_bn, load_unfused_state_dict, unfused_state_dict
from fused.layer import FusedConvBN2d
from tests.fused.helpers import BasicBlock, Flip, Gate, SmallResNet

TOL = dict(rtol=1e-10, atol=1e-10)


def _count(model, cls):
    return sum(type(m) is cls for m in model.modules())


def _fused_key(model, key):
    return model._convbn_key_map.get(key, key)


def _build(cls, seed=0):
    torch.manual_seed(seed)
    model = cls().double()
    # Non-trivial running stats and affine parameters, so that copying them matters.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
                if m.track_running_stats:
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(3)
    return model


def _sgd_step(model, lr=0.01):
    # Plain SGD by hand: importing torch.optim pulls in torch._dynamo (seconds).
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def assert_same_training(orig, fused, x, steps=3):
    """`steps` SGD steps then eval: outputs, every gradient and every buffer agree."""
    fused_params = dict(fused.named_parameters())
    for step in range(steps):
        xs = x * (1 + 0.1 * step)
        out_o, out_f = orig(xs), fused(xs)
        torch.testing.assert_close(out_f, out_o, **TOL)
        target = torch.linspace(-1, 1, out_o.numel(), dtype=out_o.dtype).view_as(out_o)
        for model, out in ((orig, out_o), (fused, out_f)):
            model.zero_grad()
            ((out - target) ** 2).sum().backward()
        # Gradients that vanish in exact arithmetic (a conv bias before training-mode BN) are
        # cancellation noise proportional to the gradients' scale: compare relative to it.
        scale = max(1.0, max(p.grad.abs().max().item() for p in orig.parameters()))
        for name, p in orig.named_parameters():
            q = fused_params[_fused_key(fused, name)]
            torch.testing.assert_close(
                q.grad,
                p.grad,
                rtol=1e-10,
                atol=1e-10 * scale,
                msg=lambda m, name=name: f"grad of {name}: {m}",
            )
        _sgd_step(orig)
        _sgd_step(fused)
    fused_sd = fused.state_dict()
    for key, value in orig.state_dict().items():
        torch.testing.assert_close(
            fused_sd[_fused_key(fused, key)],
            value,
            **TOL,
            msg=lambda m, key=key: f"state {key}: {m}",
        )
    orig.eval()
    fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), orig(x), **TOL)
    orig.train()
    fused.train()


def test_resnet_fx_path_matches_original_train_and_eval():
    orig = _build(SmallResNet)
    snapshot = copy.deepcopy(orig.state_dict())
    fused = fuse_conv_bn(orig)
    assert fused is not orig and type(fused) is SmallResNet
    assert _count(fused, FusedConvBN2d) == SmallResNet.n_fusable
    assert _count(orig, FusedConvBN2d) == 0  # the original is left untouched
    for key, value in orig.state_dict().items():
        assert torch.equal(value, snapshot[key])
    # Pairs that must not be fused.
    assert type(fused.side_conv) is nn.Conv2d and type(fused.side_bn) is nn.BatchNorm2d
    assert type(fused.pad_conv) is nn.Conv2d and type(fused.pad_bn) is nn.BatchNorm2d
    assert type(fused.head) is nn.Conv2d
    # Fused layers carry the BN's hyper-parameters.
    assert fused.block1.conv2.momentum is None
    assert fused.block2.shortcut[0].eps == 1e-5 and fused.block2.shortcut[0].momentum == 0.2
    assert not fused.dil_conv.affine and not fused.dil_conv.track_running_stats
    assert fused.block1.conv1.bias is not None and fused.block1.conv2.groups == 2
    assert fused.block2.conv1.stride in (2, (2, 2))
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_same_training(orig, fused, x)


def test_untraceable_model_uses_sequential_fallback():
    orig = _build(Gate)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(orig)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(orig.features)
    fused = fuse_conv_bn(orig)
    assert _count(fused, FusedConvBN2d) == Gate.n_fusable
    f = fused.features
    assert type(f[0]) is FusedConvBN2d and type(f[1]) is nn.Identity
    assert type(f[4][0]) is FusedConvBN2d and f[4][0].momentum is None
    assert type(f[5]) is nn.Conv2d and type(f[7]) is nn.BatchNorm2d  # not adjacent
    assert type(fused.block.conv1) is FusedConvBN2d  # traced on its own
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert_same_training(orig, fused, x)


def test_load_unfused_state_dict_reproduces_outputs():
    trained = _build(SmallResNet, seed=3)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    trained(x).sum().backward()
    with torch.no_grad():
        for p in trained.parameters():
            p -= 0.1 * p.grad
    sd = trained.state_dict()

    fresh = fuse_conv_bn(_build(SmallResNet, seed=4))
    with torch.no_grad():
        assert not torch.allclose(fresh(x), trained(x))
    result = load_unfused_state_dict(fresh, sd)
    assert not result.missing_keys and not result.unexpected_keys
    assert_same_training(trained, fresh, x)

    back = unfused_state_dict(fresh)
    assert list(back) == list(trained.state_dict())
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(back[key], value, **TOL)


def test_key_map_names_moved_entries():
    fused = fuse_conv_bn(_build(SmallResNet))
    key_map = fused._convbn_key_map
    assert key_map["block1.bn1.running_mean"].startswith("block1.conv1.")
    assert key_map["stem.1.weight"].startswith("stem.0.")
    assert "side_bn.weight" not in key_map  # not fused
    sd = fused.state_dict()
    assert all(v in sd for v in key_map.values())


def test_inplace_modifies_and_returns_the_model():
    model = _build(SmallResNet)
    out = fuse_conv_bn(model, inplace=True)
    assert out is model and _count(model, FusedConvBN2d) == SmallResNet.n_fusable


def test_fusing_twice_is_a_no_op_and_keeps_the_key_map():
    orig = _build(SmallResNet)
    once = fuse_conv_bn(orig)
    twice = fuse_conv_bn(once)
    assert _count(twice, FusedConvBN2d) == SmallResNet.n_fusable
    assert twice._convbn_key_map == once._convbn_key_map
    load_unfused_state_dict(twice, orig.state_dict())


@pytest.mark.parametrize(
    "pair,fused",
    [
        (lambda: [nn.Conv2d(3, 4, 3, padding="same"), nn.BatchNorm2d(4)], True),
        (lambda: [nn.Conv2d(3, 4, 3, padding="valid", dilation=2), nn.BatchNorm2d(4)], True),
        (lambda: [nn.Conv2d(3, 4, 2, padding="same"), nn.BatchNorm2d(4)], False),  # asymmetric pad
        (
            lambda: [nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.BatchNorm2d(4)],
            False,
        ),
        (lambda: [nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5)], False),  # num_features mismatch
        (lambda: [nn.Conv1d(3, 4, 1), nn.BatchNorm1d(4)], False),  # not 2-d
        (lambda: [nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4)], False),
    ],
    ids=["same", "valid", "same_even", "circular", "mismatch", "1d", "3d"],
)
def test_legality(pair, fused):
    torch.manual_seed(0)
    model = nn.Sequential(*pair(), nn.ReLU()).double()
    out = fuse_conv_bn(model)
    assert (_count(out, FusedConvBN2d) == 1) is fused
    if fused:
        x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
        assert_same_training(model, out, x)


class SharedBN(nn.Module):
    """The same BN module after two convs: fusing one call would change the other."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.c2(self.bn(self.c1(x))))


class Aliased(nn.Module):
    """A pair in a Sequential that is also registered under a second name."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.alias = self.seq[0]

    def forward(self, x):
        return self.seq(x) + self.alias(x)


@pytest.mark.parametrize("cls", [SharedBN, Aliased])
def test_shared_modules_are_not_fused(cls):
    torch.manual_seed(0)
    model = cls().double()
    fused = fuse_conv_bn(model)
    assert _count(fused, FusedConvBN2d) == 0
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fused(x), model(x), **TOL)


def test_frozen_parameters_stay_frozen():
    model = _build(lambda: BasicBlock(4, 4, 1))
    model.conv1.weight.requires_grad_(False)
    model.bn1.bias.requires_grad_(False)
    fused = fuse_conv_bn(model)
    assert not fused.conv1.weight.requires_grad and not fused.conv1.bn_bias.requires_grad
    assert fused.conv1.bn_weight.requires_grad


class _MyConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


def _with_hook(m):
    m.register_forward_hook(lambda mod, inp, out: out * 2)
    return m


@pytest.mark.parametrize(
    "make",
    [
        # A subclass with its own forward (fx traces through it; the Sequential fallback must not
        # take it for a Conv2d: Flip makes the Sequential untraceable).
        lambda: nn.Sequential(_MyConv(3, 4, 1), nn.BatchNorm2d(4), Flip()).double(),
        lambda: nn.Sequential(_with_hook(nn.Conv2d(3, 4, 1)), nn.BatchNorm2d(4)).double(),
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1), _with_hook(nn.BatchNorm2d(4))).double(),
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1).double(), nn.BatchNorm2d(4)),  # dtype mismatch
    ],
    ids=["subclass", "conv_hook", "bn_hook", "dtype_mismatch"],
)
def test_pairs_whose_fusion_would_change_behaviour_are_skipped(make):
    torch.manual_seed(0)
    model = make()
    assert _count(fuse_conv_bn(model), FusedConvBN2d) == 0
