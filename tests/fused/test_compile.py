"""FusedConvBN2d, the fused variants and the custom op under torch.compile(fullgraph=True): the
same numbers as eager mode (output, every gradient, running statistics, num_batches_tracked),
through `fused.traceable`'s plain ops, which the compiler sees through."""

from __future__ import annotations

import copy

import pytest
import torch

from fused import FusedConvBN2d
from fused.custom_op import memory_saving_conv_bn_op
from fused.entry import conv_bn_entry
from fused.memory_saving import memory_saving_conv_bn
from fused.registry import BUILTIN_VARIANTS
from fused.traceable import conv_bn_traceable

# aot_eager: dynamo capture, functionalization and AOTAutograd's partition, without inductor's
# C++ builds (seconds each on CPU); what these tests check is decided before codegen.
BACKEND = "aot_eager"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _grads(module, x):
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("form", ["standard", "tutorial"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_layer_compiled_matches_eager(form, momentum, dtype):
    torch.manual_seed(0)
    eager = FusedConvBN2d(
        3, 4, 3, stride=(1, 2), padding=1, bias=True, form=form, momentum=momentum, dtype=dtype
    )
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True, backend=BACKEND)
    for _ in range(3):  # running stats and the cumulative average carry over steps
        x = torch.randn(2, 3, 6, 5, dtype=dtype)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(2, 4, 6, 3, dtype=dtype)
        eager.zero_grad()
        twin.zero_grad()
        out_a, out_b = eager(xa), compiled(xb)
        out_a.backward(g)
        out_b.backward(g)
        torch.testing.assert_close(out_b, out_a)
        for a, b in zip(_grads(eager, xa), _grads(twin, xb), strict=True):
            torch.testing.assert_close(b, a)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(twin, name), getattr(eager, name), msg=name)
    eager.eval()
    twin.eval()
    x = torch.randn(2, 3, 6, 5, dtype=dtype)
    before = twin.running_var.clone()
    torch.testing.assert_close(compiled(x), eager(x))
    assert torch.equal(twin.running_var, before), "eval mode changed the running stats"


def _ops_traced(fn, *args, **kwargs) -> set:
    """Names of the ops in the graph dynamo captures for fn(*args, **kwargs)."""
    seen = set()

    def backend(gm, example_inputs):
        seen.update(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    torch.compile(fn, fullgraph=True, backend=backend)(*args, **kwargs)
    return seen


def _call_args(requires_grad=True):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 5, requires_grad=requires_grad)
    w = torch.randn(4, 3, 3, 3, requires_grad=requires_grad)
    return x, w, None, torch.ones(4), torch.zeros(4), torch.zeros(4), torch.ones(4)


@pytest.mark.parametrize(
    "entry",
    [memory_saving_conv_bn_op, memory_saving_conv_bn],
    ids=["custom_op_entry", "functional"],
)
def test_entries_trace_plain_ops_under_compile(entry):
    # Without the dispatch the graph would hold the opaque custom op, or the hand-written
    # autograd.Function (the "traced" peer of the measurements in docs/performance.md), and no
    # conv2d.
    ops = _ops_traced(entry, *_call_args(), form="standard")
    assert not any("convbn" in op for op in ops), ops
    assert any("conv2d" in op for op in ops), ops


def test_the_autograd_function_itself_traces_no_plain_conv():
    # The contrast that makes the dispatch necessary.
    without_dispatch = conv_bn_entry(memory_saving_conv_bn.kernel, name="no_dispatch", doc="")
    ops = _ops_traced(without_dispatch, *_call_args(), form="standard")
    assert not any("conv2d" in op for op in ops), ops


def _assert_same_calls(out_a, a, out_b, b):
    """Two calls on equal inputs `a` and `b`: the same output, x and weight gradients and updated
    running statistics."""
    torch.testing.assert_close(out_b, out_a)
    g = torch.randn_like(out_a)
    for ga, gb in zip(
        torch.autograd.grad(out_a, a[:2], g), torch.autograd.grad(out_b, b[:2], g), strict=True
    ):
        torch.testing.assert_close(gb, ga)
    torch.testing.assert_close(b[5], a[5])
    torch.testing.assert_close(b[6], a[6])


@pytest.mark.parametrize("form", ["standard", "tutorial"])
def test_traceable_matches_fused_in_eager_mode(form):
    a, b = _call_args(), _call_args()
    out_a = memory_saving_conv_bn(*a, padding=1, form=form)
    out_b = conv_bn_traceable(*b, padding=1, form=form)
    _assert_same_calls(out_a, a, out_b, b)


def test_traceable_tutorial_zero_variance_gradient_is_the_finite_limit():
    # A constant channel: the contract's gradient is (g - mean(g)) / eps, never NaN.
    x = torch.ones(2, 1, 3, 3, requires_grad=True)
    w = torch.ones(1, 1, 1, 1)
    eps = 1e-3
    out = conv_bn_traceable(x, w, form="tutorial", eps=eps)
    g = torch.arange(18.0).view(2, 1, 3, 3)
    (grad_x,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad_x, (g - g.mean()) / eps)


def test_traceable_validates_like_the_fused_op():
    x, w, *_ = _call_args()
    with pytest.raises(ValueError, match="stride"):
        conv_bn_traceable(x, w, stride=0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        conv_bn_traceable(x[:1, :, :3, :3], w)


@pytest.mark.parametrize(
    "variant", [v for v in BUILTIN_VARIANTS if "compile" in v.supports], ids=lambda v: v.name
)
def test_builtins_declaring_compile_match_their_eager_mode(variant):
    a, b = _call_args(), _call_args()
    kw = dict(padding=1, stride=2, momentum=0.3)
    out_a = variant(*a, **kw)
    out_b = torch.compile(variant.fn, fullgraph=True, backend=BACKEND)(*b, **kw)
    _assert_same_calls(out_a, a, out_b, b)
