"""verify.runner: tensors in the case's dtype and layout, back to NumPy, and run()'s results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fused.variant import Variant
from verify.case import Case
from verify.runner import TORCH_DTYPES, ContractViolation, make_inputs, run, to_numpy, to_torch

CASE = Case(
    batch=2,
    in_channels=3,
    out_channels=4,
    height=5,
    width=6,
    kernel=(2, 3),
    bias=True,
    affine=True,
    running_stats=True,
    dtype="float32",
    seed=7,
)
ARRAYS = CASE.arrays()


@pytest.mark.parametrize("dtype", sorted(TORCH_DTYPES))
def test_contiguous_values_and_dtype(dtype):
    case = CASE.replace(dtype=dtype, layout="contiguous")
    arrays = case.arrays()
    t = to_torch(arrays["x"], case)
    assert t.dtype == TORCH_DTYPES[dtype] and t.is_contiguous() and t.device.type == "cpu"
    np.testing.assert_array_equal(to_numpy(t), arrays["x"])  # arrays are already rounded
    assert not t.requires_grad and t.is_leaf


def test_channels_last():
    case = CASE.replace(layout="channels_last")
    t = to_torch(ARRAYS["x"], case, requires_grad=True)
    assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    assert t.is_leaf and t.requires_grad
    np.testing.assert_array_equal(to_numpy(t), ARRAYS["x"])
    # 1-D parameters are unaffected.
    assert to_torch(ARRAYS["bias"], case).is_contiguous()


@pytest.mark.parametrize("name", ["x", "weight", "bias", "grad_out"])
def test_strided_is_noncontiguous_with_nan_gaps(name):
    case = CASE.replace(layout="strided")
    t = to_torch(ARRAYS[name], case, requires_grad=name != "grad_out")
    assert not t.is_contiguous()
    assert t.is_leaf
    assert t.stride()[-1] == 2
    np.testing.assert_array_equal(to_numpy(t), ARRAYS[name])
    storage = torch.as_strided(
        t.detach(), (t.untyped_storage().nbytes() // t.element_size(),), (1,), 0
    )
    values = storage.numpy()
    assert np.all(np.isnan(values[1::2])), "gaps must hold NaN"
    np.testing.assert_array_equal(values[::2], ARRAYS[name].ravel())


def test_explicit_layout_and_none():
    t = to_torch(ARRAYS["x"], CASE.replace(layout="strided"), layout="contiguous")
    assert t.is_contiguous()
    assert to_torch(None, CASE) is None and to_numpy(None) is None


def test_to_numpy_round_trip_is_float64_copy():
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).requires_grad_()
    a = to_numpy(t)
    assert a.dtype == np.float64 and a.shape == (2, 3)
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))
    a[0, 0] = 99
    assert t[0, 0].item() == 0  # a copy, never a view of the tensor


def test_make_inputs_running_stats_contiguous_and_without_grad():
    case = CASE.replace(layout="strided")
    tensors = make_inputs(case, ARRAYS, requires_grad=True)
    for name in ("running_mean", "running_var"):
        assert tensors[name].is_contiguous() and not tensors[name].requires_grad
    for name in ("x", "weight", "bias", "bn_weight", "bn_bias"):
        assert tensors[name].requires_grad and not tensors[name].is_contiguous()
    assert not tensors["grad_out"].requires_grad and not tensors["grad_out"].is_contiguous()


def _ignores_inputs(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    training=True,
    eps=1e-3,
    **_,
):
    """Uses neither the conv bias nor bn_bias (a wrong kernel, but a legal call)."""
    y = F.conv2d(x, weight)
    out = F.batch_norm(y, None, None, bn_weight, None, training=True, eps=eps)
    with torch.no_grad():
        running_mean.fill_(1.5)
    return out


def test_run_returns_zero_gradients_for_unused_inputs():
    kernel = Variant(
        "ignores", _ignores_inputs, form="standard", supports={"bias", "affine", "running_stats"}
    )
    results, call = run(kernel, CASE, ARRAYS)
    assert results.grad_bias is not None and results.grad_bn_bias is not None
    np.testing.assert_array_equal(results.grad_bias, np.zeros(4))
    np.testing.assert_array_equal(results.grad_bn_bias, np.zeros(4))
    assert np.any(results.grad_x != 0) and np.any(results.grad_bn_weight != 0)
    assert results.grad_x.shape == CASE.x_shape and results.grad_x.dtype == np.float64
    # Running stats are read back after the call (in-place updates show).
    np.testing.assert_array_equal(results.running_mean, np.full(4, 1.5))
    np.testing.assert_array_equal(results.running_var, ARRAYS["running_var"])
    assert call.out is not None and call.inputs["x"].grad is not None


def test_run_without_gradients():
    kernel = Variant(
        "ignores", _ignores_inputs, form="standard", supports={"bias", "affine", "running_stats"}
    )
    results, _ = run(kernel, CASE, ARRAYS, gradients=False)
    assert results.out.shape == CASE.out_shape
    assert results.grad_x is None and results.grad_weight is None


def test_run_rejects_non_tensor_and_graphless_outputs():
    def returns_tuple(x, weight, *args, **kwargs):
        return (F.conv2d(x, weight),)

    def detached(x, weight, *args, **kwargs):
        return F.conv2d(x, weight).detach()

    case = Case(batch=2, in_channels=1, out_channels=1, height=3, width=3, kernel=(1, 1))
    with pytest.raises(ContractViolation, match="tuple"):
        run(Variant("tuple", returns_tuple), case, case.arrays())
    with pytest.raises(ContractViolation, match="no autograd graph"):
        run(Variant("detached", detached), case, case.arrays())
