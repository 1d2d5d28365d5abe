"""fused.entry: every kernel's entry point takes one signature, refuses before it modifies, and
counts `num_batches_tracked` as nn.BatchNorm2d does."""

from __future__ import annotations

import inspect
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fused.arguments import check_conv_bn_arguments
from fused.baselines import checkpoint_conv_bn, eager_conv_bn
from fused.custom_op import memory_saving_conv_bn_op
from fused.entry import conv_bn_entry, with_form
from fused.memory_saving import memory_saving_conv_bn
from fused.registry import BUILTIN_VARIANTS
from fused.traceable import conv_bn_traceable
from fused.triton_support import triton_missing_reason
from fused.tutorial import tutorial_variant_fn
from fused.variant import UnsupportedFeatureError
from tests.fused.helpers import make_case

ENTRIES = {
    "memory_saving_conv_bn": memory_saving_conv_bn,
    "memory_saving_conv_bn_op": memory_saving_conv_bn_op,
    "conv_bn_traceable": conv_bn_traceable,
    "eager_conv_bn": eager_conv_bn,
    "checkpoint_conv_bn": checkpoint_conv_bn,
}
if not triton_missing_reason():
    from fused.triton_conv_bn import triton_conv_bn

    ENTRIES["triton_conv_bn"] = triton_conv_bn


def _inputs():
    """x, weight (requiring grad) and the running statistics of three channels."""
    x, w, _, _, _, rm, rv = make_case(N=4, C_in=2, H=5, W=5, C_out=3, k=(3, 3), running=True)[0]
    return x, w, (rm, rv)


def test_every_entry_point_has_the_validators_signature():
    expected = inspect.signature(check_conv_bn_arguments).parameters
    x, w, _ = _inputs()
    assert set(check_conv_bn_arguments(x, w).keywords()) == set(expected)
    fns = list(ENTRIES.values()) + [v.fn for v in BUILTIN_VARIANTS if not v.unavailable]
    for fn in fns:
        params = inspect.signature(fn).parameters
        assert list(params) == list(expected), fn.__name__
        for name, param in params.items():
            if name != "form":
                assert param.default == expected[name].default, (fn.__name__, name)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_cumulative_average_counts_like_batch_norm2d(name):
    # momentum=None: the running statistics are the plain average of every batch's, as in
    # nn.BatchNorm2d; the counter is incremented once per training call and not in eval.
    entry = ENTRIES[name]
    x, w, _ = _inputs()
    bn = nn.BatchNorm2d(3, eps=1e-3, momentum=None, affine=False, dtype=torch.float64)
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    counter = torch.tensor(0)
    for step in range(3):
        xs = x.detach() * (step + 1) + step
        expected = bn(F.conv2d(xs, w.detach()))
        out = entry(
            xs,
            w.detach(),
            running_mean=running_mean,
            running_var=running_var,
            momentum=None,
            num_batches_tracked=counter,
        )
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(running_mean, bn.running_mean)
    torch.testing.assert_close(running_var, bn.running_var)
    assert int(counter) == int(bn.num_batches_tracked) == 3
    entry(
        x.detach(),
        w.detach(),
        None,
        None,
        None,
        running_mean,
        running_var,
        training=False,
        num_batches_tracked=counter,
    )
    assert int(counter) == 3, "eval mode counted a batch"


@pytest.mark.parametrize(
    "entry, kwargs, error",
    [
        (eager_conv_bn, dict(form="tutorial"), ValueError),
        (checkpoint_conv_bn, dict(form="tutorial"), ValueError),
        (with_form(memory_saving_conv_bn, "tutorial"), dict(form="standard"), ValueError),
        (tutorial_variant_fn, dict(padding=1), UnsupportedFeatureError),
        (memory_saving_conv_bn, dict(eps=-1.0), ValueError),
    ],
    ids=["eager_tutorial", "checkpoint_tutorial", "fixed_form", "tutorial_padding", "eps"],
)
def test_refusals_modify_nothing(entry, kwargs, error):
    x, w, (running_mean, running_var) = _inputs()
    stats = dict(running_mean=running_mean.clone(), running_var=running_var.clone())
    counter = torch.tensor(5)
    with pytest.raises(error):
        entry(x, w, **stats, momentum=None, num_batches_tracked=counter, **kwargs)
    assert int(counter) == 5
    torch.testing.assert_close(stats["running_mean"], running_mean, rtol=0, atol=0)
    torch.testing.assert_close(stats["running_var"], running_var, rtol=0, atol=0)


def test_entry_points_pickle_and_have_their_own_code():
    # Own code objects: torch.compile's caches and recompile limit are per code object.
    codes = {id(entry.__code__) for entry in ENTRIES.values()}
    assert len(codes) == len(ENTRIES)
    for entry in ENTRIES.values():
        assert pickle.loads(pickle.dumps(entry)) is entry
        assert entry.__code__.co_name == entry.__name__


def test_a_kernel_that_raises_counts_no_batch():
    def failing(call):
        raise RuntimeError("out of memory")

    entry = conv_bn_entry(failing, name="failing", doc="")
    x, w, (running_mean, running_var) = _inputs()
    counter = torch.tensor(2)
    with pytest.raises(RuntimeError, match="out of memory"):
        entry(
            x,
            w,
            None,
            None,
            None,
            running_mean,
            running_var,
            momentum=None,
            num_batches_tracked=counter,
        )
    assert int(counter) == 2


def test_argument_errors_name_the_entry_point():
    x, w, _ = _inputs()
    with pytest.raises(TypeError, match=r"^eager_conv_bn\(\) got an unexpected keyword"):
        eager_conv_bn(x, w, strid=2)
    with pytest.raises(TypeError, match=r"^memory_saving_conv_bn\(\) takes from 2 to 7"):
        memory_saving_conv_bn(x, w, None, None, None, None, None, 1)


def test_a_default_form_outside_the_kernels_forms_is_refused_at_definition():
    with pytest.raises(ValueError, match="default form 'tutorial'"):
        conv_bn_entry(lambda call: call.x, name="k", doc="", form="tutorial", forms=("standard",))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(bias=torch.zeros(3)), "bias must have x's dtype torch.float64"),
        (dict(bias=torch.zeros(3, dtype=torch.float64, device="meta")), "bias is on meta"),
        (dict(bn_weight=torch.ones(3, device="meta")), "bn_weight is on meta"),
        (dict(running_mean=torch.zeros(3, dtype=torch.long)), "running_mean must be floating"),
        (dict(weight="meta"), "weight is on meta"),
        (dict(num_batches_tracked=torch.tensor(1.0)), "must be a one-element integer tensor"),
        (dict(num_batches_tracked=torch.tensor(True)), "must be a one-element integer tensor"),
    ],
    ids=[
        "bias_dtype",
        "bias_device",
        "bn_weight_device",
        "integer_stats",
        "weight_device",
        "float_counter",
        "bool_counter",
    ],
)
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_tensors_of_another_device_or_dtype_are_refused(name, change, message):
    # Before these checks, a float64 bias with float32 x failed inside the conv, a meta-device
    # bias made the CPU conv read uninitialised memory, and integer running statistics were
    # silently truncated.
    x, w, (running_mean, running_var) = _inputs()
    arguments = dict(x=x, weight=w, running_mean=running_mean.clone(), running_var=running_var)
    if change.get("weight") == "meta":
        change = dict(weight=w.detach().to("meta"))
    arguments.update(change)
    before = arguments["running_mean"].clone()
    with pytest.raises(ValueError, match=message):
        ENTRIES[name](**arguments)
    torch.testing.assert_close(arguments["running_mean"], before, rtol=0, atol=0)
