"""verify.memory: saved-tensor bytes (exact, deduplicated by storage), kept memory and peak
bytes; and the `saved_memory` property's judgement of kept memory."""

import gc

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import run_cli
from verify import memory
from verify.memory import (
    kept_memory,
    peak_bytes,
    peak_cpu_bytes,
    saved_tensor_bytes,
    saved_tensors,
)

F32 = 4


def leaf(*shape):
    return torch.randn(*shape, requires_grad=True)


# ---------------------------------------------------------------------------------------------
# saved_tensor_bytes


def test_product_saves_both_operands():
    x, y = leaf(1000), leaf(1000)
    assert saved_tensor_bytes(lambda: x * y) == 2 * 1000 * F32


def test_same_tensor_saved_twice_counts_once():
    x = leaf(1000)
    report = saved_tensors(lambda: x * x)
    assert report.count == 2 and report.storages == 1
    assert report.total_bytes == 1000 * F32


def test_views_of_one_storage_count_the_whole_storage_once():
    x = leaf(1000)
    # Two disjoint slices saved: both keep the same 1000-float storage alive.
    assert saved_tensor_bytes(lambda: x[:10] * x[500:510]) == 1000 * F32


def test_distinct_storages_of_equal_size_are_not_merged():
    x, y = leaf(10, 10), leaf(10, 10)
    assert saved_tensor_bytes(lambda: (x * y) * (y * x)) == 2 * 100 * F32 + 2 * 100 * F32


def test_nothing_saved_without_grad():
    x, y = torch.randn(1000), torch.randn(1000)
    assert saved_tensor_bytes(lambda: x * y) == 0


def test_parameters_are_counted_and_reported_apart():
    lin = torch.nn.Linear(100, 50)
    a = leaf(20, 100)
    report = saved_tensors(lambda: lin(a), params=lin.parameters())
    weight_bytes = 50 * 100 * F32
    # linear saves its input (for the weight grad) and the weight (a view of it, for the input grad)
    assert report.total_bytes == 20 * 100 * F32 + weight_bytes
    assert report.parameter_bytes == weight_bytes
    assert report.activation_bytes == 20 * 100 * F32


def test_eager_conv_bn_saves_input_weight_conv_output_and_stats():
    x, w = torch.randn(4, 3, 10, 10), leaf(8, 3, 3, 3)
    y_bytes = 4 * 8 * 8 * 8 * F32
    report = saved_tensors(
        lambda: F.batch_norm(F.conv2d(x, w), None, None, training=True, eps=1e-3), params=[w]
    )
    assert report.total_bytes == x.numel() * F32 + w.numel() * F32 + y_bytes + 2 * 8 * F32
    assert report.parameter_bytes == w.numel() * F32


def test_checkpointed_region_saves_only_its_inputs():
    x = leaf(1000)

    def body(t):
        return (t * 2).sin().cos()

    plain = saved_tensor_bytes(lambda: body(x))
    ckpt = saved_tensor_bytes(
        lambda: torch.utils.checkpoint.checkpoint(body, x, use_reentrant=False)
    )
    assert plain == 2 * 1000 * F32  # sin and cos save their inputs (two fresh storages)
    assert ckpt == 1000 * F32  # only x, kept by checkpoint


def test_result_is_dropped_unless_kept():
    x = leaf(100)
    assert saved_tensors(lambda: x * x).result is None
    kept = saved_tensors(lambda: x * x, keep_result=True).result
    kept.sum().backward()
    assert torch.allclose(x.grad, 2 * x.detach())


# ---------------------------------------------------------------------------------------------
# kept_memory

N = 1000  # floats in the tensors below: 4,000-byte storages


class _Square(torch.autograd.Function):
    """x * x whose backward needs x: kept through `keep(ctx, x)`, a parameter of the test."""

    @staticmethod
    def forward(ctx, x, keep):
        ctx.x = keep(ctx, x.detach().clone())
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * ctx.x * grad, None


def _square(keep):
    x = leaf(N)
    return x, lambda: _Square.apply(x, keep)


def _keep_backward(x):
    def backward(out):
        out.sum().backward()
        return [x.grad]

    return backward


def test_kept_counts_a_ctx_attribute_but_not_the_output_nor_the_inputs():
    x, forward = _square(lambda ctx, t: t)
    report = kept_memory(forward)
    assert report.kept_bytes == N * F32 and report.kept_storages == (N * F32,)
    assert report.output_bytes == N * F32


def test_kept_sees_what_saved_tensors_hooks_do_not():
    x, forward = _square(lambda ctx, t: t)
    assert saved_tensor_bytes(forward) == 0
    assert kept_memory(forward).kept_bytes == N * F32


def test_kept_counts_a_closure_and_frees_temporaries():
    def keep(ctx, t):
        temporary = torch.empty(5 * N)  # noqa: F841 - allocated and dropped in the call
        ctx.get = lambda: t
        return t

    x, forward = _square(keep)
    assert kept_memory(forward).kept_bytes == N * F32


def test_nothing_is_left_after_backward_unless_a_global_holds_it():
    x, forward = _square(lambda ctx, t: t)
    report = kept_memory(forward, _keep_backward(x))
    assert report.leaked_bytes == 0  # x.grad (held by the caller) is not a leak

    cache = []

    def keep(ctx, t):
        cache.append(t)
        return t

    x, forward = _square(keep)
    report = kept_memory(forward, _keep_backward(x))
    assert report.kept_bytes == N * F32
    assert report.leaked_bytes == N * F32 and report.leaked_storages == (N * F32,)


def test_a_kept_output_outlives_the_step():
    cache = []
    x = leaf(N)

    def forward():
        out = x.clone()  # saves nothing for backward
        cache.append(out)
        return out

    report = kept_memory(forward, _keep_backward(x))
    assert report.kept_bytes == 0 and report.leaked_bytes == N * F32


class _Cycle:
    def __init__(self, t):
        self.t, self.me = t, self


def test_a_cycle_is_not_kept_and_an_old_one_is_collected_on_request():
    x, young = _square(lambda ctx, t: _Cycle(t.clone()) and t)
    assert kept_memory(young).kept_bytes == N * F32

    def survives_a_collection(ctx, t):
        cycle = _Cycle(t.clone())
        gc.collect()  # the cycle, still referenced, moves to the oldest generation
        del cycle
        return t

    x, old = _square(survives_a_collection)
    assert kept_memory(old).kept_bytes == 2 * N * F32
    assert kept_memory(old, full_collection=True).kept_bytes == N * F32


def test_forward_must_return_a_tensor():
    with pytest.raises(TypeError, match="forward returned tuple"):
        kept_memory(lambda: (torch.ones(3),))


# ---------------------------------------------------------------------------------------------
# The saved_memory property's judgement of kept memory (its planted bugs: tests/gallery)


def _property_case(**changes):
    from verify.case import Case

    fields = dict(batch=64, in_channels=1, out_channels=2, height=2, width=2, kernel=(1, 1))
    fields.update(changes)
    return Case(form="standard", dtype="float32", seed=1, **fields)


def _memory_saving(name, impl):
    from fused.variant import BN_FEATURES, CONV_FEATURES, Variant

    return Variant(
        name, impl, form="standard", supports=CONV_FEATURES | BN_FEATURES, memory_saving=True
    )


class _KeepsOnCtx:
    """`_correct.Explicit` keeping `extra(x, y)` as a ctx attribute."""

    def __new__(cls, extra):
        from tests.gallery._correct import Explicit

        class Keeps(Explicit):
            def save(self, ctx, x, weight, bias, bn_weight, y, mean, std, denom):
                super().save(ctx, x, weight, bias, bn_weight, y, mean, std, denom)
                ctx.extra = extra(x, y)

        return Keeps("standard")


def test_bookkeeping_that_does_not_grow_with_the_batch_is_allowed():
    from fused.registry import builtin_variant
    from verify.properties import saved_memory

    case = _property_case()
    # torch.utils.checkpoint keeps the CPU generator state (5,056 bytes): more than eager keeps
    # on this call (the 2,048-byte conv output and its statistics), but it does not grow.
    assert saved_memory.check(builtin_variant("checkpoint"), case) < 1


def test_bookkeeping_past_its_allowance_fails():
    from verify.properties import saved_memory
    from verify.report import PropertyFailure

    fixed = saved_memory.BOOKKEEPING_BYTES + 1024  # and two statistics of 2 channels: 16 bytes
    variant = _memory_saving("keeps_a_table", _KeepsOnCtx(lambda x, y: torch.empty(fixed // 4)))
    with pytest.raises(
        PropertyFailure, match=rf" 0 bytes grow with the batch .* and {fixed + 2 * 8} do not"
    ):
        saved_memory.check(variant, _property_case())


def test_a_copy_of_the_input_is_allowed_and_an_activation_is_not():
    from verify.properties import saved_memory
    from verify.report import PropertyFailure

    case = _property_case(in_channels=1, out_channels=4)
    copy = _memory_saving("keeps_an_input_copy", _KeepsOnCtx(lambda x, y: x.clone()))
    assert saved_memory.check(copy, case) < 1
    activation = _memory_saving("keeps_the_conv_output", _KeepsOnCtx(lambda x, y: y))
    with pytest.raises(
        PropertyFailure,
        match=r"keeps 4128 bytes alive for backward .*storages of 4096, 16, 16 bytes",
    ):
        saved_memory.check(activation, case)


# ---------------------------------------------------------------------------------------------
# peak bytes

MB = 1_000_000


def test_peak_is_the_largest_live_total_not_the_sum_of_allocations():
    def sequential():
        a = torch.empty(MB, dtype=torch.uint8)
        del a
        b = torch.empty(2 * MB, dtype=torch.uint8)
        del b

    def overlapping():
        a = torch.empty(MB, dtype=torch.uint8)
        b = torch.empty(2 * MB, dtype=torch.uint8)
        del a, b

    assert 2 * MB <= peak_cpu_bytes(sequential) < 2 * MB + 64 * 1024
    assert 3 * MB <= peak_cpu_bytes(overlapping) < 3 * MB + 64 * 1024


def test_peak_responds_to_a_known_extra_allocation():
    x = torch.randn(64, 64)

    def step(extra=0):
        def run():
            held = torch.empty(extra, dtype=torch.uint8) if extra else None
            y = (x @ x).relu()
            del held
            return y

        return run

    base = peak_cpu_bytes(step())
    assert base >= 64 * 64 * F32
    assert peak_cpu_bytes(step(5 * MB)) - base == 5 * MB


def test_peak_is_measured_over_the_starting_level():
    already = torch.empty(8 * MB, dtype=torch.uint8)  # allocated before: not part of the peak
    assert peak_cpu_bytes(lambda: torch.empty(MB, dtype=torch.uint8)) < 2 * MB
    del already


def test_peak_bytes_dispatches_on_device():
    assert peak_bytes(lambda: torch.empty(MB, dtype=torch.uint8), "cpu") >= MB


@pytest.mark.cuda
def test_peak_cuda_bytes_responds_to_a_known_allocation():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    keep = torch.empty(MB, dtype=torch.uint8, device="cuda")
    small = memory.peak_cuda_bytes(lambda: torch.empty(1024, dtype=torch.uint8, device="cuda"))
    big = memory.peak_cuda_bytes(lambda: torch.empty(4 * MB, dtype=torch.uint8, device="cuda"))
    assert small < MB <= 4 * MB <= big
    del keep


# ---------------------------------------------------------------------------------------------
# The benchmark workloads' memory figures


def test_workload_figures_are_bytes_keys_and_fused_saves_less_than_eager():
    from verify.benchmarks.harness import memory_figures
    from verify.benchmarks.models import get_variant, mnist_workload

    eager = memory_figures(mnist_workload(get_variant("eager"), batch=4))
    ckpt = memory_figures(mnist_workload(get_variant("checkpoint"), batch=4))
    assert set(eager) == {"saved_bytes", "saved_activation_bytes", "peak_bytes"}
    assert all(isinstance(v, int) and v > 0 for v in eager.values())
    # Checkpointing the two conv-BN pairs drops exactly their conv outputs (BN inputs) and batch
    # statistics; everything else the network saves is the same.
    conv_outputs = 4 * 32 * 26 * 26 * F32 + 4 * 64 * 24 * 24 * F32
    stats = 2 * 32 * F32 + 2 * 64 * F32
    assert eager["saved_bytes"] - ckpt["saved_bytes"] == conv_outputs + stats
    assert (
        eager["saved_bytes"] - eager["saved_activation_bytes"]
        == ckpt["saved_bytes"] - ckpt["saved_activation_bytes"]
    )


# ---------------------------------------------------------------------------------------------
# The memory table after pytest-benchmark's time tables


def _flat(name, variant, saved, peak, ratios=None):
    extra = {"variant": variant, "saved_bytes": saved, "peak_bytes": peak}
    if ratios:
        extra.update(baseline="eager", time_vs_baseline=ratios)
    return {"name": name, "extra_info": extra}


def test_memory_table_shows_figures_and_ratios_to_the_baseline_per_group():
    from verify.benchmarks.summary import format_memory_tables

    groups = [
        (
            "mnist_net batch=256",
            [
                _flat(
                    "test_mnist_net[fused_standard-b256]",
                    "fused_standard",
                    94_087_300,
                    184_600_000,
                    ratios=[1.10, 1.12, 1.14, 1.11, 1.13],
                ),
                _flat("test_mnist_net[eager-b256]", "eager", 153_987_972, 200_022_320),
            ],
        ),
        ("no memory here", [{"name": "test_other", "extra_info": {}}]),
    ]
    lines = format_memory_tables(groups)
    text = "\n".join(lines)
    assert "memory 'mnist_net batch=256': 2 tests" in text
    assert "no memory here" not in text
    fused = next(line for line in lines if line.startswith("test_mnist_net[fused_standard-b256]"))
    assert fused.split() == [
        "test_mnist_net[fused_standard-b256]",
        "94.1",
        "0.61x",
        "184.6",
        "0.92x",
        "1.12x",
        "[1.11-1.13]",
    ]
    eager = next(line for line in lines if line.startswith("test_mnist_net[eager-b256]"))
    assert eager.split() == ["test_mnist_net[eager-b256]", "154.0", "1.00x", "200.0", "1.00x"]


def test_benchmark_run_prints_memory_next_to_time_tables(tmp_path):
    import json

    out = tmp_path / "run.json"
    proc = run_cli(
        [
            "-m",
            "pytest",
            "verify/benchmarks/bench_mnist.py",
            "--benchmark-only",
            "-k",
            "b32 and (eager or fused_standard)",
            "--benchmark-max-time",
            "0.001",
            "--benchmark-json",
            str(out),
            "-q",
            "-p",
            "no:randomly",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    text = proc.stdout
    time_table = text.index("benchmark 'mnist_net batch=32': 2 tests")
    memory_table = text.index("memory 'mnist_net batch=32': 2 tests")
    assert time_table < memory_table
    assert "saved (MB)" in text and "peak (MB)" in text and "time vs eager" in text
    benches = {b["extra_info"]["variant"]: b for b in json.loads(out.read_text())["benchmarks"]}
    fused = benches["fused_standard"]
    # every round of the variant was paired with an eager step: one ratio per round
    assert len(fused["extra_info"]["time_vs_baseline"]) == fused["stats"]["rounds"] >= 11
    assert fused["extra_info"]["baseline"] == "eager"
    assert "time_vs_baseline" not in benches["eager"]["extra_info"]
