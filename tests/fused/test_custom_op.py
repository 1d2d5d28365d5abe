"""fused.custom_op: the torch.library custom op version of the fused conv-BN."""

from __future__ import annotations

import pytest
import torch

from fused import custom_op
from fused.custom_op import memory_saving_conv_bn_op
from fused.memory_saving import memory_saving_conv_bn
from fused.variant import FORMS
from tests.fused.helpers import clone_tensors, make_case


def op_args(training, form, channels_last=False, dtype=torch.float64):
    tensors, kw = make_case(bias=True, affine=True, running=True, groups=2, dtype=dtype)
    x = tensors[0]
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    return (x, *tensors[1:], [2, 1], [1, 1], [1, 2], 2, training, 1e-3, form)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_opcheck_forward(form, training, channels_last):
    torch.library.opcheck(custom_op._conv_bn_op, op_args(training, form, channels_last))


def test_opcheck_track_and_backward_ops():
    torch.library.opcheck(
        custom_op._track_batch,
        (torch.zeros(3), torch.ones(3), torch.randn(3), torch.rand(3), 7, 0.3),
    )
    tensors, _ = make_case(affine=True, bias=True)
    x, w, b, bw = (t.detach() for t in tensors[:4])
    g = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    for needs in ([True, True, True, True, True], [False, True, False, True, False]):
        torch.library.opcheck(
            custom_op._conv_bn_backward_op,
            (
                g,
                x,
                w,
                b,
                bw,
                torch.randn(6, dtype=torch.float64),
                torch.rand(6, dtype=torch.float64) + 1,
                torch.rand(6, dtype=torch.float64),
                [1, 1],
                [0, 0],
                [1, 1],
                1,
                True,
                1e-3,
                "tutorial",
                needs,
            ),
        )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_same_numbers_as_functional(form, training):
    tensors, kw = make_case(bias=True, affine=True, running=True, stride=2, padding=1)
    a, b = clone_tensors(tensors), clone_tensors(tensors)
    nbt_a, nbt_b = torch.tensor(3), torch.tensor(3)
    out_a = memory_saving_conv_bn_op(
        *a, form=form, training=training, momentum=None, num_batches_tracked=nbt_a, **kw
    )
    out_b = memory_saving_conv_bn(
        *b, form=form, training=training, momentum=None, num_batches_tracked=nbt_b, **kw
    )
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(a[5], b[5], rtol=0, atol=0)
    torch.testing.assert_close(a[6], b[6], rtol=0, atol=0)
    assert int(nbt_a) == int(nbt_b)
    g = torch.randn_like(out_a)
    ga = torch.autograd.grad(out_a, [t for t in a[:5] if t is not None], g)
    gb = torch.autograd.grad(out_b, [t for t in b[:5] if t is not None], g)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_validation_before_mutation():
    tensors, kw = make_case(running=True)
    rm = tensors[5].clone()
    with pytest.raises(ValueError, match="stride"):
        memory_saving_conv_bn_op(*tensors, stride=0)
    assert torch.equal(rm, tensors[5])


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    compiled = torch.compile(memory_saving_conv_bn_op, fullgraph=True, backend="inductor")
    tensors, kw = make_case(
        N=2, C_in=2, H=6, W=6, C_out=3, affine=True, running=True, dtype=torch.float32
    )
    a, b = clone_tensors(tensors), clone_tensors(tensors)
    out_a = compiled(*a, form="tutorial", padding=1, **kw)
    out_b = memory_saving_conv_bn(*b, form="tutorial", padding=1, **kw)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(a[5], b[5])
    torch.testing.assert_close(a[6], b[6])
    g = torch.randn_like(out_a)
    ga = torch.autograd.grad(out_a, [t for t in a[:5] if t is not None], g)
    gb = torch.autograd.grad(out_b, [t for t in b[:5] if t is not None], g)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)
