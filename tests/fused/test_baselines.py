"""fused.baselines: eager and checkpointed Conv2d+BatchNorm2d against the NumPy oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fused.baselines import checkpoint_conv_bn, eager_conv_bn
from fused.variant import BN_FEATURES, CONV_FEATURES
from tests.fused.helpers import (
    BAD_CALLS,
    assert_rejected,
    compare_with_reference,
    config,
    make_inputs,
)
from verify.memory import saved_tensors

BASELINES = [eager_conv_bn, checkpoint_conv_bn]
ALL = tuple(sorted(CONV_FEATURES | BN_FEATURES))
CONFIGS = {
    "plain": config(),
    "all_train": config(features=ALL),
    "all_eval": config(features=ALL, training=False),
    "eval_plain_affine": config(features=("affine",), training=False),
    "one_by_one": config(k=(1, 1), N=2, H=1, W=1),  # two values per channel: the minimum
}


def _naive_checkpoint_conv_bn(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    training=True,
    momentum=0.1,
    eps=1e-3,
):
    """The obvious but wrong checkpoint: BN's running-stat update is redone in recomputation."""

    def f(x, weight, bias, bn_weight, bn_bias):
        y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        return F.batch_norm(
            y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps
        )

    return checkpoint(f, x, weight, bias, bn_weight, bn_bias, use_reentrant=False)


def _conv_only_checkpoint(
    x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None, running_var=None, **kw
):
    """Checkpoints only the conv: BN still saves the conv output (no real saving)."""
    conv_kw = {k: kw[k] for k in ("stride", "padding", "dilation", "groups") if k in kw}
    y = checkpoint(
        lambda a, b, c: F.conv2d(a, b, c, **conv_kw), x, weight, bias, use_reentrant=False
    )
    return F.batch_norm(
        y,
        running_mean,
        running_var,
        bn_weight,
        bn_bias,
        kw.get("training", True),
        kw.get("momentum", 0.1),
        kw.get("eps", 1e-3),
    )


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_matches_reference_float64(fn, name):
    errors = compare_with_reference(fn, CONFIGS[name], form="standard")
    assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_channels_last_matches_reference(fn):
    errors = compare_with_reference(
        fn, CONFIGS["all_train"], form="standard", memory_format=torch.channels_last
    )
    assert max(errors.values()) < 1e-10, errors


def _running_stats_after_backward(fn):
    cfg = config(features=("running_stats", "affine", "bias"))
    x, w, b, g, bb, rm, rv = make_inputs(cfg)
    expected_rm, expected_rv = rm.clone(), rv.clone()
    eager_conv_bn(x, w, b, g, bb, expected_rm, expected_rv, momentum=0.3)
    leaves = [t.requires_grad_() for t in (x, w, b, g, bb)]
    out = fn(*leaves, rm, rv, momentum=0.3)
    (out * out).sum().backward()  # recomputation happens here for checkpointed variants
    return (rm, rv), (expected_rm, expected_rv)


def test_checkpoint_updates_running_stats_exactly_once():
    (rm, rv), (erm, erv) = _running_stats_after_backward(checkpoint_conv_bn)
    torch.testing.assert_close(rm, erm, rtol=0, atol=1e-12)
    torch.testing.assert_close(rv, erv, rtol=0, atol=1e-12)


def test_running_stats_check_catches_naive_checkpoint():
    """The check above fails on the naive checkpoint, which updates the stats twice."""
    (rm, rv), (erm, erv) = _running_stats_after_backward(_naive_checkpoint_conv_bn)
    assert not torch.allclose(rm, erm, rtol=0, atol=1e-12)


def _memory_case(fn):
    cfg = config(
        N=8,
        C_in=4,
        H=16,
        W=16,
        C_out=8,
        k=(3, 3),
        padding=(1, 1),
        bias=True,
        affine=True,
        running_stats=True,
    )
    inputs = list(make_inputs(cfg))
    for i in range(5):
        inputs[i].requires_grad_()
    # The inputs' storages are counted apart: what is left is what the call made and kept.
    return saved_tensors(lambda: fn(*inputs, padding=1), params=inputs[:5])


def test_checkpoint_saves_only_inputs_and_fewer_bytes_than_eager():
    eager = _memory_case(eager_conv_bn)
    ckpt = _memory_case(checkpoint_conv_bn)
    assert ckpt.activation_bytes == 0, "checkpoint saved something other than its inputs"
    assert ckpt.total_bytes < eager.total_bytes


def test_memory_check_catches_conv_only_checkpoint():
    assert _memory_case(_conv_only_checkpoint).activation_bytes > 0


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_double_backward(fn):
    cfg = config(features=ALL, N=2, C_in=2, C_out=2, H=4, W=4, k=(2, 2))
    for training in (True, False):
        x, w, b, g, bb, rm, rv = make_inputs(dict(cfg, training=training))
        args = [t.requires_grad_() for t in (x, w, b, g, bb)]
        kw = dict(
            stride=cfg["stride"],
            padding=cfg["padding"],
            dilation=cfg["dilation"],
            groups=cfg["groups"],
            training=training,
            momentum=0.0,
        )
        assert torch.autograd.gradgradcheck(
            lambda *a, rm=rm, rv=rv, kw=kw: fn(*a, rm, rv, **kw), args, fast_mode=True
        )


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_too_few_values_per_channel_raises_without_update(fn):
    cfg = config(features=("running_stats",), k=(1, 1), N=1, H=1, W=1)
    x, w, b, g, bb, rm, rv = make_inputs(cfg)
    rm0, rv0 = rm.clone(), rv.clone()
    with pytest.raises(ValueError, match="value per channel"):
        fn(x.requires_grad_(), w, None, None, None, rm, rv)
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)
    # Stride makes a 2x2 input a single output value per channel: still rejected.
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError):
        fn(x, w, None, None, None, rm, rv, stride=2)
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_eval_without_running_stats_raises(fn):
    x, w, *_ = make_inputs(config())
    with pytest.raises(ValueError, match="running"):
        fn(x, w, training=False)


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_half_running_stats_raise(fn):
    x, w, *_ = make_inputs(config())
    with pytest.raises(ValueError, match="together"):
        fn(x, w, running_mean=torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
def test_eval_does_not_touch_running_stats(fn):
    cfg = config(features=("running_stats",), training=False)
    x, w, b, g, bb, rm, rv = make_inputs(cfg)
    rm0, rv0 = rm.clone(), rv.clone()
    out = fn(x.requires_grad_(), w, None, None, None, rm, rv, training=False)
    out.sum().backward()
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)


@pytest.mark.parametrize("fn", BASELINES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_raise_clear_errors_without_update(fn, name):
    assert_rejected(fn, name)
