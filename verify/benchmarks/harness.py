"""Shared measurement of a workload: memory figures (once) and the timed forward+backward step."""
from __future__ import annotations

import statistics
import time

import torch

from verify.benchmarks.memory import peak_bytes, saved_tensors
from verify.benchmarks.models import Workload

__all__ = ["memory_figures", "describe", "run_benchmark", "time_step", "build_or_skip"]


def memory_figures(workload: Workload, peak: bool = True) -> dict:
    """Bytes figures of one training step of `workload` (keys end in ``bytes``).

    saved_bytes: everything saved for backward by the forward pass (and loss), deduplicated by
        storage, parameters included; exact and machine independent.
    saved_activation_bytes: the same without the model's parameters.
    peak_bytes: peak memory allocated during one forward+backward step over the level before it
        (`verify.benchmarks.memory.peak_bytes`); allocator and kernel dependent. Left out
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


def run_benchmark(benchmark, workload: Workload, group: str) -> None:
    """Record the workload's memory figures in `benchmark.extra_info`, then time its step.

    With benchmarks disabled (the default `pytest verify` run: the step runs once, nothing is
    reported), the profiled peak-memory step is left out to keep that run fast; saved bytes (one
    forward pass) are still measured, so the whole path keeps working.
    """
    benchmark.group = group
    benchmark.extra_info.update(describe(workload))
    measuring = not getattr(benchmark, "disabled", False)
    benchmark.extra_info.update(memory_figures(workload, peak=measuring))
    benchmark(workload.step)
    workload.zero_grad()


def time_step(workload: Workload, repeats: int = 15, warmup: int = 2) -> dict:
    """Median and quartiles (seconds) of `repeats` timed steps, after `warmup` untimed ones."""
    for _ in range(warmup):
        workload.step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        workload.step()
        times.append(time.perf_counter() - start)
    workload.zero_grad()
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3, "min": min(times), "times": times}


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
            pytest.skip(f"variant {variant.name!r} is a Triton kernel running on Triton's CPU "
                        "interpreter (TRITON_INTERPRET=1): its timings would measure the "
                        "interpreter; benchmark it on a GPU")
    if device.type == "cuda" and "cuda" not in variant.supports:
        pytest.skip(f"variant {variant.name!r} does not declare the 'cuda' feature")
    try:
        return make(variant, device=device, **kwargs)
    except MissingFeatures as exc:
        pytest.skip(str(exc))
