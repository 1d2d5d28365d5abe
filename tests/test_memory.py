"""verify.memory: saved-tensor bytes (exact, deduplicated by storage) and peak bytes."""

import pytest
import torch
import torch.nn.functional as F

from verify import memory
from verify.memory import peak_bytes, peak_cpu_bytes, saved_tensor_bytes, saved_tensors

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
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [
            sys.executable,
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
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
