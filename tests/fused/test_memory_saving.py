"""fused.memory_saving.memory_saving_conv_bn against the float64 oracle, plus its memory and error
contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fused.memory_saving import memory_saving_conv_bn
from fused.registry import builtin_variant
from fused.variant import FORMS
from tests.fused.helpers import (
    BAD_CALLS,
    assert_close,
    assert_rejected,
    clone_tensors,
    expected,
    make_case,
)
from tests.helpers import ratios
from verify.case import Case
from verify.dtypes import HALF_DTYPES
from verify.memory import saved_tensor_bytes, saved_tensors

CONFIGS = {
    "plain": dict(),
    "stride_pad": dict(stride=(2, 1), padding=(1, 2)),
    "dilation": dict(dilation=(2, 1), H=9),
    "groups_bias": dict(groups=2, bias=True),
    "affine_running": dict(affine=True, running=True, momentum=0.3),
    "everything": dict(
        stride=2, padding=1, dilation=(1, 2), groups=2, bias=True, affine=True, running=True
    ),
    "depthwise": dict(groups=4, C_out=8, affine=True, running=True),
}


def run_and_compare(case_kw, *, form, training, memory_format=None, slice_input=False):
    tensors, kw = make_case(**case_kw)
    kw.update(form=form, training=training)
    if not training and tensors[5] is None:
        pytest.skip("eval needs running stats")
    grad_out_shape = F.conv2d(
        tensors[0],
        tensors[1],
        tensors[2],
        *(kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))),
    ).shape
    g = torch.randn(grad_out_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exp_out, exp_rm, exp_rv, exp_grads = expected(tensors, g, **kw)
    mine = clone_tensors(tensors)
    x = mine[0]
    if memory_format is not None:
        x = x.detach().to(memory_format=memory_format).requires_grad_()
        mine[0] = x
    if slice_input:  # a non-contiguous view of a bigger tensor
        big = torch.zeros(x.shape[0], x.shape[1] * 2, x.shape[2], x.shape[3] + 3, dtype=x.dtype)
        big[:, ::2, :, 1:-2] = x.detach()
        big.requires_grad_()
        x = big[:, ::2, :, 1:-2]
        assert not x.is_contiguous()
    out = memory_saving_conv_bn(x, *mine[1:], **kw)
    assert_close(out, exp_out, what="out")
    assert_close(mine[5], exp_rm, what="running_mean")
    assert_close(mine[6], exp_rv, what="running_var")
    leaves = [big if slice_input else mine[0]] + mine[1:5]
    needs = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(out, needs, g))
    got = [next(grads) if t is not None else None for t in leaves]
    if slice_input:
        got[0] = got[0][:, ::2, :, 1:-2]
    names = ("x", "weight", "bias", "bn_weight", "bn_bias")
    for name, a, e in zip(names, got, exp_grads, strict=True):
        assert_close(a, e, what=f"grad {name}")
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_oracle(name, form, training):
    case = CONFIGS[name] if training else {**CONFIGS[name], "running": True}
    run_and_compare(case, form=form, training=training)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("layout", ["channels_last", "slice"])
def test_layouts(form, layout):
    case = CONFIGS["everything"]
    if layout == "channels_last":
        out = run_and_compare(case, form=form, training=True, memory_format=torch.channels_last)
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        out = run_and_compare(case, form=form, training=True, slice_input=True)


def test_output_follows_conv_memory_format():
    tensors, kw = make_case(affine=True)
    x = tensors[0].detach().to(memory_format=torch.channels_last)
    conv = F.conv2d(x, tensors[1].detach())
    out = memory_saving_conv_bn(
        x, tensors[1].detach(), bn_weight=tensors[3].detach(), bn_bias=tensors[4].detach()
    )
    assert out.stride() == conv.stride()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck(form, training):
    tensors, kw = make_case(
        N=2,
        C_in=2,
        H=4,
        W=3,
        C_out=2,
        k=(2, 2),
        bias=True,
        affine=True,
        running=True,
        stride=(1, 2),
        padding=1,
    )
    x, w, b, bw, bb, rm, rv = tensors

    def fn(x, w, b, bw, bb):
        return memory_saving_conv_bn(
            x, w, b, bw, bb, rm.clone(), rv.clone(), form=form, training=training, **kw
        )

    assert torch.autograd.gradcheck(fn, (x, w, b, bw, bb))


@pytest.mark.parametrize("form", FORMS)
def test_zero_variance_channel(form):
    tensors, kw = make_case(affine=True, bias=True)
    with torch.no_grad():
        tensors[1][0].zero_()  # channel 0 of the conv output is its bias: zero variance
    g = torch.randn(3, 6, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exp_out, _, _, exp_grads = expected(tensors, g, form=form, **kw)
    mine = clone_tensors(tensors)
    out = memory_saving_conv_bn(*mine, form=form, **kw)
    grads = torch.autograd.grad(out, [t for t in mine if t is not None], g)
    assert all(torch.isfinite(gr).all() for gr in grads)
    assert_close(out, exp_out, what="out")
    # The constant channel's gradients are ~1/eps times larger, its conv-bias gradient a sum
    # that cancels to rounding noise of that size: compare on that scale.
    for a, e in zip(grads, [e for e in exp_grads if e is not None], strict=True):
        assert_close(a, e, atol=1e-8, what="grad")


def test_tutorial_zero_variance_limit():
    # Identity conv so grad_x is the batch-norm input gradient itself.
    y = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y[:, 1] = 2.5
    y.requires_grad_()
    eye = torch.eye(2, dtype=torch.float64).view(2, 2, 1, 1)
    bw = torch.tensor([1.0, 3.0], dtype=torch.float64)
    g = torch.randn_like(y)
    out = memory_saving_conv_bn(y, eye, bn_weight=bw, form="tutorial", eps=1e-3)
    (gy,) = torch.autograd.grad(out, y, g)
    limit = (g[:, 1] - g[:, 1].mean()) / 1e-3 * 3.0
    torch.testing.assert_close(gy[:, 1], limit, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_single_value_per_channel(form):
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    rm, rv, nbt = (
        torch.zeros(4, dtype=torch.float64),
        torch.ones(4, dtype=torch.float64),
        torch.tensor(5),
    )
    with pytest.raises(ValueError, match=r"\(1, 4, 1, 1\)"):
        memory_saving_conv_bn(
            x, w, running_mean=rm, running_var=rv, form=form, num_batches_tracked=nbt
        )
    assert torch.equal(rm, torch.zeros(4, dtype=torch.float64)) and int(nbt) == 5
    assert torch.equal(rv, torch.ones(4, dtype=torch.float64))
    # Eval mode is fine with a single value.
    out = memory_saving_conv_bn(x, w, running_mean=rm, running_var=rv, training=False, form=form)
    assert out.shape == (1, 4, 1, 1)


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_raise_before_touching_state(name):
    assert_rejected(memory_saving_conv_bn, name)


def test_unknown_form_is_refused():
    x, w = torch.randn(2, 4, 5, 5), torch.randn(6, 4, 3, 3)
    with pytest.raises(ValueError, match="form must be one of"):
        memory_saving_conv_bn(x, w, form="nope")


@pytest.mark.parametrize("form", FORMS)
def test_inputs_not_modified(form):
    tensors, kw = make_case(bias=True, affine=True, running=True)
    before = [t.detach().clone() for t in tensors if t is not None]
    out = memory_saving_conv_bn(*tensors, form=form, training=False, **kw)
    out.backward(torch.ones_like(out))
    out = memory_saving_conv_bn(*tensors, form=form, training=True, **kw)
    out.backward(torch.randn_like(out))
    after = [t.detach() for t in tensors if t is not None]
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        if i < 5:  # running stats (last two) legitimately change in training
            assert torch.equal(b, a)


@pytest.mark.parametrize("momentum", [None, 0.25])
def test_momentum_and_counter_match_batchnorm(momentum):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=True).double()
    bn = nn.BatchNorm2d(5, eps=1e-3, momentum=momentum).double()
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    nbt = bn.num_batches_tracked.clone()
    for step in range(3):
        x = torch.randn(4, 3, 6, 6, dtype=torch.float64) * (step + 1)
        ref = bn(conv(x))
        out = memory_saving_conv_bn(
            x,
            conv.weight,
            conv.bias,
            bn.weight,
            bn.bias,
            rm,
            rv,
            momentum=momentum,
            eps=1e-3,
            num_batches_tracked=nbt,
        )
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(rm, bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rv, bn.running_var, rtol=1e-12, atol=1e-12)
        assert int(nbt) == int(bn.num_batches_tracked) == step + 1


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_saves_less_than_eager(form, training):
    x = torch.randn(8, 4, 12, 12, requires_grad=True)
    w = torch.randn(16, 4, 3, 3, requires_grad=True)
    bw, bb = torch.ones(16, requires_grad=True), torch.zeros(16, requires_grad=True)
    rm, rv = torch.zeros(16), torch.ones(16)
    fused = saved_tensors(
        lambda: memory_saving_conv_bn(x, w, None, bw, bb, rm, rv, training=training, form=form),
        params=[x],
    )
    eager = saved_tensor_bytes(
        lambda: F.batch_norm(F.conv2d(x, w), rm.clone(), rv.clone(), bw, bb, training)
    )
    # x itself, and besides it no more than the weight and per-channel vectors: nothing
    # output-sized (the conv output is 8 x 16 x 10 x 10 values, 51,200 bytes).
    assert fused.parameter_bytes == x.numel() * 4
    assert fused.activation_bytes <= w.numel() * 4 + 8 * 16 * 8
    assert fused.total_bytes < eager


def test_double_backward_raises():
    tensors, kw = make_case(affine=True)
    out = memory_saving_conv_bn(*tensors, **kw)
    g = torch.randn_like(out).requires_grad_()
    (gx,) = torch.autograd.grad(out, tensors[0], g, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


@pytest.mark.parametrize("need", ["x", "weight", "bn_weight", "bn_bias"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_partial_requires_grad(need, training):
    tensors, kw = make_case(affine=True, running=True, bias=True)
    plain = [None if t is None else t.detach() for t in tensors]
    idx = {"x": 0, "weight": 1, "bn_weight": 3, "bn_bias": 4}[need]
    plain[idx] = plain[idx].clone().requires_grad_()
    g = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    _, _, _, exp_grads = expected(tensors, g, training=training, **kw)
    out = memory_saving_conv_bn(
        *plain[:5], plain[5].clone(), plain[6].clone(), training=training, **kw
    )
    (got,) = torch.autograd.grad(out, plain[idx], g)
    assert_close(got, exp_grads[idx], what=need)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("param_dtype", ["", "float32"], ids=["half", "autocast"])
@pytest.mark.parametrize("form", FORMS)
def test_half_types_within_the_suites_bounds(dtype, param_dtype, form):
    """Half activations (bn parameters and running statistics in the same half dtype, or in
    float32 as under autocast) against the suite's derived bounds, the oracle fed the inputs as
    rounded to the dtypes they are passed in."""
    case = Case(
        batch=4,
        in_channels=4,
        out_channels=6,
        height=8,
        width=8,
        kernel=(3, 2),
        affine=True,
        running_stats=True,
        momentum=0.3,
        form=form,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    r = ratios(builtin_variant(f"fused_{form}"), case)  # memory_saving_conv_bn, form fixed
    assert set(r) == {
        "out",
        "running_mean",
        "running_var",
        "grad_x",
        "grad_weight",
        "grad_bn_weight",
        "grad_bn_bias",
    }
    assert max(r.values()) <= 1, r
