"""Shared measurement of a workload: memory figures (once) and the timed forward+backward step."""

from __future__ import annotations

import math
import time

import torch

from verify.benchmarks.models import Workload
from verify.memory import peak_bytes, saved_tensors

__all__ = [
    "memory_figures",
    "describe",
    "run_benchmark",
    "bench_network",
    "build_or_skip",
    "build_baseline",
    "BASELINE",
    "PAIRED_MIN_ROUNDS",
]

# The variant every other one is timed against, round by round (see `run_benchmark`).
BASELINE = "eager"
# Enough rounds for a rank test to separate two runs: with 11 per side a one-sided Mann-Whitney
# test can reach p < 1e-4, so a real shift is not lost to the round count.
PAIRED_MIN_ROUNDS = 11


def memory_figures(workload: Workload, peak: bool = True) -> dict:
    """Bytes figures of one training step of `workload` (keys end in ``bytes``).

    saved_bytes: everything saved for backward by the forward pass (and loss), deduplicated by
        storage, parameters included; exact and machine independent.
    saved_activation_bytes: the same without the model's parameters.
    peak_bytes: peak memory allocated during one forward+backward step over the level before it
        (`verify.memory.peak_bytes`); allocator and kernel dependent. Left out
        when `peak` is false.
    """
    workload.zero_grad()
    saved = saved_tensors(workload.forward, params=list(workload.model.parameters()))
    figures = {
        "saved_bytes": saved.total_bytes,
        "saved_activation_bytes": saved.activation_bytes,
    }
    if peak:
        workload.zero_grad()
        figures["peak_bytes"] = peak_bytes(workload.step, workload.device)
        workload.zero_grad()
    return figures


def describe(workload: Workload) -> dict:
    """The non-numeric facts of a workload, for `benchmark.extra_info`."""
    return {
        "model": workload.name,
        "variant": workload.variant.name,
        "form": workload.variant.form,
        "batch": workload.batch,
        "features": list(workload.features),
        "device": str(workload.device),
        "threads": torch.get_num_threads(),
    }


def run_benchmark(benchmark, workload: Workload, group: str, baseline=None) -> None:
    """Record the workload's memory figures in `benchmark.extra_info`, then time its step.

    `baseline`: None, or a callable returning the same network built on the baseline variant (or
    None); called only when measuring. With a baseline workload, every timed round
    of the variant is preceded by one step of the baseline, timed too, and ``extra_info`` gets
    ``baseline`` (its variant name) and ``time_vs_baseline``: the per-round ratios variant time /
    baseline time. Why: on a shared machine the load changes from second to second and between
    runs, so absolute times of one commit differ by 2x across runs; a step of the baseline taken
    a few milliseconds before each variant step sees the same load, and the ratio cancels most
    of it. The regression gate (`verify.compare`) judges time on these ratios.

    With benchmarks disabled (the default `pytest verify` run: the step runs once, nothing is
    reported), the profiled peak-memory step and the baseline are left out to keep that run fast;
    saved bytes (one forward pass) are still measured, so the whole path keeps working.
    """
    benchmark.group = group
    benchmark.extra_info.update(describe(workload))
    measuring = not getattr(benchmark, "disabled", False)
    benchmark.extra_info.update(memory_figures(workload, peak=measuring))
    if not measuring:
        benchmark(workload.step)
        workload.zero_grad()
        return
    baseline = baseline() if baseline is not None else None
    baseline_times: list[float] = []
    rounds = _paired_rounds(benchmark, workload, baseline)
    benchmark.pedantic(
        workload.step,
        setup=timed(baseline.step, baseline_times) if baseline is not None else None,
        rounds=rounds,
        warmup_rounds=0,
        iterations=1,
    )
    workload.zero_grad()
    if baseline is not None:
        baseline.zero_grad()
        data = benchmark.stats.stats.data
        benchmark.extra_info["baseline"] = baseline.variant.name
        benchmark.extra_info["time_vs_baseline"] = [
            round(v / b, 6) for v, b in zip(data, baseline_times, strict=False)
        ]


def timed(step, times: list[float]):
    """`step` as the setup of `benchmark.pedantic`: a baseline round before every timed round, so
    both see the same machine load and their ratio means something on a noisy machine; each
    call appends its seconds to `times`."""

    def run():
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)

    return run


def _paired_rounds(benchmark, workload: Workload, baseline: Workload | None) -> int:
    """Rounds to time: at least PAIRED_MIN_ROUNDS (and ``--benchmark-min-rounds``), more when a
    round is shorter than ``--benchmark-max-time`` allows. One untimed warm-up step of each
    workload both warms up and calibrates."""
    start = time.perf_counter()
    workload.step()
    if baseline is not None:
        baseline.step()
    pair = max(time.perf_counter() - start, 1e-6)
    min_rounds = max(PAIRED_MIN_ROUNDS, int(getattr(benchmark, "_min_rounds", 0) or 0))
    max_time = float(getattr(benchmark, "_max_time", 1.0) or 1.0)
    return max(min_rounds, min(200, math.ceil(max_time / pair)))


def build_baseline(make, variant, device, **kwargs) -> Workload | None:
    """The same workload on the BASELINE variant, to pair with `variant`'s; None for the baseline
    itself (or when it is not available)."""
    from verify.benchmarks.models import get_variant

    if variant.name == BASELINE:
        return None
    base = get_variant(BASELINE)
    return make(base, device=torch.device(device), **kwargs) if base is not None else None


def build_or_skip(make, variant, device, **kwargs) -> Workload:
    """`make(variant, device=device, **kwargs)`, or `pytest.skip` (with the reason) when the
    variant lacks a feature the network or the device needs, is unavailable, or is a Triton
    kernel that would run on the interpreter."""
    import pytest

    from verify.benchmarks.models import MissingFeatures

    device = torch.device(device)
    if getattr(variant, "unavailable", ""):
        pytest.skip(f"variant {variant.name!r} is unavailable: {variant.unavailable}")
    if getattr(variant, "triton", False):
        from fused.triton_support import interpreting

        if interpreting():
            pytest.skip(
                f"variant {variant.name!r} is a Triton kernel running on Triton's CPU "
                "interpreter (TRITON_INTERPRET=1): its timings would measure the "
                "interpreter; benchmark it on a GPU"
            )
    if device.type == "cuda" and "cuda" not in variant.supports:
        pytest.skip(f"variant {variant.name!r} does not declare the 'cuda' feature")
    try:
        return make(variant, device=device, **kwargs)
    except MissingFeatures as exc:
        pytest.skip(str(exc))


def compiled_or_skip(benchmark, workload: Workload, budget) -> Workload:
    """`workload` under torch.compile at `budget` (`verify.benchmarks.compiled`), its first call's
    seconds in ``extra_info["compile_seconds"]`` (never in the step time); `pytest.skip` when
    benchmarks are disabled (the default `pytest verify` run: compiling costs seconds to a minute
    per network on CPU, and tests/test_benchmark_memory.py runs this path on a tiny network) or
    when the variant does not declare the "compile" feature."""
    import pytest

    from verify.benchmarks.compiled import budget_label, compiled_workload

    if getattr(benchmark, "disabled", False):
        pytest.skip(
            "compile peers run only when benchmarks measure (--benchmark-only): "
            "compiling costs seconds to a minute per network on CPU"
        )
    if "compile" not in workload.variant.supports:
        pytest.skip(f"variant {workload.variant.name!r} does not declare the 'compile' feature")
    compiled, seconds = compiled_workload(workload, budget)
    benchmark.extra_info.update(compiled=budget_label(budget), compile_seconds=round(seconds, 3))
    return compiled


# A distinct default: None is a budget (the partitioner's default), not "no compile".
_NOT_COMPILED = object()


def bench_network(benchmark, make, variant, device, batch: int, budget=_NOT_COMPILED) -> None:
    """Benchmark the network `make` builds (a `models` workload function) on `variant` at
    `batch`: as it is, or with a `budget`, under torch.compile at that budget
    (`compiled_or_skip`); each round paired with a step of the same network, not compiled, on
    the BASELINE variant.

    Grouped by network and batch, so that every variant and compile peer of one size sits side
    by side in the tables."""
    workload = build_or_skip(make, variant, device, batch=batch)
    group = f"{workload.name} batch={batch}"
    if budget is not _NOT_COMPILED:
        workload = compiled_or_skip(benchmark, workload, budget)
    run_benchmark(
        benchmark,
        workload,
        group=group,
        baseline=lambda: build_baseline(make, variant, device, batch=batch),
    )
