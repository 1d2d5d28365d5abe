"""fused.triton_conv_bn: the Triton batch norm against the NumPy oracle and torch, through Triton's
CPU interpreter here (the pytest plugin sets TRITON_INTERPRET=1 without a GPU)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "triton", reason="triton is not installed (pip install 'convbn-verify[triton]')"
)

from fused import triton_support  # noqa: E402
from fused.triton_bn import TritonBatchNorm, _channel_strides  # noqa: E402
from fused.triton_conv_bn import triton_conv_bn  # noqa: E402
from fused.variant import BN_FEATURES, CONV_FEATURES, FORMS  # noqa: E402
from tests.fused.helpers import (  # noqa: E402
    BAD_CALLS,
    assert_rejected,
    compare_with_reference,
    config,
    make_inputs,
)
from verify.memory import saved_tensors  # noqa: E402

ALL = tuple(sorted(CONV_FEATURES | BN_FEATURES))


def _fn(form):
    def fn(*args, **kwargs):
        return triton_conv_bn(*args, form=form, **kwargs)

    return fn


def test_kernels_run_on_the_interpreter_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the kernels are compiled")
    assert triton_support.interpreting()
    assert triton_support.is_interpreted(TritonBatchNorm.kernels.welford_partials_kernel)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "memory_format",
    [torch.contiguous_format, torch.channels_last],
    ids=["contiguous", "channels_last"],
)
def test_matches_oracle_with_every_feature(form, training, memory_format):
    cfg = config(features=ALL, training=training)
    errors = compare_with_reference(_fn(form), cfg, form=form, memory_format=memory_format)
    assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)],
    ids=["f32", "f16", "bf16"],
)
def test_lower_precision_matches_oracle(form, dtype, tol):
    cfg = config(features=("bias", "affine", "running_stats"), N=4, H=8, W=8)
    errors = compare_with_reference(_fn(form), cfg, form=form, dtype=dtype)
    assert max(errors.values()) < tol, errors


@pytest.mark.parametrize(
    "shape",
    [(3, 2, 23, 19), (4, 3, 32, 32), (1, 2, 1, 2)],
    ids=["split-with-tail", "split-exact", "two-values"],
)
def test_moments_match_torch_across_the_split(shape):
    """Channels of 1,311 and 4,096 values (2 and 4 programs of 1,024; a partial last tile in the
    first) and of 2 values: the split Welford reduction and its merge against torch."""
    y = (torch.randn(shape, dtype=torch.float64) * 3 + 100).to(memory_format=torch.channels_last)
    mean, var = TritonBatchNorm().moments(y, torch.float64)
    torch.testing.assert_close(mean, y.mean(dim=(0, 2, 3)), rtol=1e-14, atol=0)
    torch.testing.assert_close(var, y.var(dim=(0, 2, 3), unbiased=False), rtol=1e-11, atol=0)


def test_split_covers_every_value_once():
    bn = TritonBatchNorm()
    for values in (2, 255, 256, 257, 1024, 1025, 16385, 10**6):
        programs, chunk = bn.split(values)
        assert chunk % bn.block == 0 and programs <= bn.max_programs
        assert (programs - 1) * chunk < values <= programs * chunk, (values, programs, chunk)
    assert bn.split(16385) == (17, 1024)


def test_backward_sums_and_input_grad_across_the_split():
    g = torch.randn(3, 2, 23, 19, dtype=torch.float64)[..., ::1]
    y = torch.randn(3, 2, 23, 19, dtype=torch.float64)
    mean = y.mean(dim=(0, 2, 3))
    bn = TritonBatchNorm()
    sum_g, sum_gd = bn.grad_sums(g, y, mean)
    torch.testing.assert_close(sum_g, g.sum(dim=(0, 2, 3)))
    torch.testing.assert_close(sum_gd, (g * (y - mean.view(-1, 1, 1))).sum(dim=(0, 2, 3)))
    a, b, k = (torch.randn(2, dtype=torch.float64) for _ in range(3))
    expected = a.view(-1, 1, 1) * g + b.view(-1, 1, 1) * y + k.view(-1, 1, 1)
    torch.testing.assert_close(bn.input_grad(g, y.clone(), a, b, k), expected)
    torch.testing.assert_close(bn.input_grad(g, None, a, None, None), a.view(-1, 1, 1) * g)


def test_strided_views_are_read_in_place_or_copied():
    base = torch.randn(2, 3, 4, 10)
    every_other = base[..., ::2]
    assert _channel_strides(every_other)[0] is every_other
    transposed = base.transpose(2, 3)  # H and W cannot be folded into one stride
    folded = _channel_strides(transposed)
    assert folded[0].is_contiguous() and folded[3] == 1
    mean, var = TritonBatchNorm().moments(transposed, torch.float32)
    torch.testing.assert_close(mean, transposed.mean(dim=(0, 2, 3)))


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_raises_value_error_and_leaves_running_stats(name):
    assert_rejected(triton_conv_bn, name)


def test_saves_only_the_conv_input_for_backward():
    cfg = config(N=4, C_in=3, C_out=8, H=12, W=12)
    x, w, *_ = make_inputs(cfg)
    x.requires_grad_()
    saved = saved_tensors(lambda: triton_conv_bn(x, w), params=[x])
    x_bytes = x.numel() * x.element_size()
    # x itself, and less than another x besides it.
    assert saved.parameter_bytes == x_bytes and saved.activation_bytes < x_bytes


def test_configure_interpreter_respects_an_explicit_setting(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(triton_support, "_gpu_available", lambda: False)
    assert triton_support.configure_interpreter() is False
    assert triton_support.configure_interpreter(force=True) is True
    monkeypatch.delenv("TRITON_INTERPRET")
    assert triton_support.configure_interpreter() is True
