"""Memory figures of a training step: bytes saved for backward, and peak bytes allocated.

Two measurements, with different strengths:

`saved_tensor_bytes(fn)` / `saved_tensors(fn, params=...)`
    Exact and machine independent. Runs `fn` (a forward pass) under
    `torch.autograd.graph.saved_tensors_hooks` and adds up the bytes of every tensor autograd saves
    for backward, **deduplicated by untyped storage**: a storage saved twice (``x * x``, or a ReLU
    applied in place to a batch-norm output that the next convolution also saves) is counted once,
    at the storage's full size (a saved view keeps its whole storage alive). Everything saved is
    counted, parameters included, because a saved parameter is memory the graph holds on to as much
    as an activation is; pass the parameters as `params` to also get the activation-only figure
    (`SavedTensors.activation_bytes`), which excludes the storages of those tensors.

    Not seen: tensors an `autograd.Function` stashes as plain ``ctx`` attributes instead of through
    ``ctx.save_for_backward`` (the seed tutorial keeps its per-channel sum and sqrt(var) that way:
    C floats per layer, negligible), and memory autograd keeps for itself (graph nodes). Tensors
    saved inside `torch.utils.checkpoint` regions are packed by checkpoint's own hooks, which take
    precedence over ours, so they are correctly not counted; what checkpoint itself keeps (its
    inputs) is.

`peak_bytes(fn, device)` (`peak_cpu_bytes` / `peak_cuda_bytes`)
    The largest amount of memory allocated at any moment while `fn` (a forward+backward step) runs,
    over what was allocated when it started. Includes the gradients the step creates and
    transient workspaces. On CUDA this is `torch.cuda.max_memory_allocated()` after
    `reset_peak_memory_stats()`. On CPU there is no allocator peak counter, so the step runs under
    `torch.profiler` with `profile_memory=True` and the peak is the running maximum of the
    allocation and free events' sizes in time order. Depends on the allocator, kernels and thread
    count, so it is not machine independent the way saved bytes are. Memory that existed before
    the step and is freed during it is not subtracted on CPU (the profiler only sizes frees of
    allocations it saw), so clear gradients before measuring, as the benchmarks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

__all__ = [
    "SavedTensors",
    "saved_tensors",
    "saved_tensor_bytes",
    "peak_bytes",
    "peak_cpu_bytes",
    "peak_cuda_bytes",
]


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    return (t.device.type, t.device.index, storage.data_ptr(), storage.nbytes())


@dataclass
class SavedTensors:
    """What a forward pass saved for backward, deduplicated by storage."""

    total_bytes: int = 0
    parameter_bytes: int = 0
    count: int = 0  # tensors packed (before deduplication)
    storages: int = 0  # distinct storages
    result: object = field(default=None, repr=False)

    @property
    def activation_bytes(self) -> int:
        """Bytes saved excluding the storages of the given parameters."""
        return self.total_bytes - self.parameter_bytes


def saved_tensors(
    fn: Callable[[], object], params: Iterable[torch.Tensor] = (), keep_result: bool = False
) -> SavedTensors:
    """Run `fn()` and measure the tensors saved for backward while it runs.

    `params`: tensors (typically `model.parameters()`) whose storages are reported separately as
    `parameter_bytes`. Set `keep_result` to keep `fn`'s return value (and with it the graph) in
    `SavedTensors.result`; by default it is dropped so the saved memory is freed.
    """
    param_keys = {_storage_key(p) for p in params}
    seen: dict = {}
    keep_alive = []  # hold every saved storage until counted, so a freed address cannot be reused
    report = SavedTensors()

    def pack(t: torch.Tensor):
        report.count += 1
        key = _storage_key(t)
        if key not in seen:
            seen[key] = key[3]
            keep_alive.append(t.untyped_storage())
        return t

    def unpack(t):
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        result = fn()
    report.storages = len(seen)
    report.total_bytes = sum(seen.values())
    report.parameter_bytes = sum(n for k, n in seen.items() if k in param_keys)
    keep_alive.clear()
    if keep_result:
        report.result = result
    return report


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of all tensors saved for backward while `fn()` runs, each storage counted once."""
    return saved_tensors(fn).total_bytes


def _allocation_events(prof) -> list:
    """(time_ns, signed bytes) of every allocation/free the profiler recorded, in time order."""
    try:
        from torch._C._profiler import _EventType

        tree = prof.profiler.kineto_results.experimental_event_tree()
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on torch version
        raise RuntimeError(
            f"peak_cpu_bytes needs torch.profiler's event tree, not available in "
            f"torch {torch.__version__}: {exc}"
        ) from exc
    events = []
    stack = list(tree)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            if fields.device.type == "cpu":
                events.append((node.start_time_ns, int(fields.alloc_size)))
        stack.extend(node.children)
    events.sort(key=lambda e: e[0])
    return events


def peak_cpu_bytes(fn: Callable[[], object]) -> int:
    """Peak CPU bytes allocated while `fn()` runs, over the level when it started (>= 0)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU],
        profile_memory=True,
        record_shapes=False,
        with_stack=False,
    ) as prof:
        result = fn()
        del result
    level = peak = 0
    for _, size in _allocation_events(prof):
        level += size
        peak = max(peak, level)
    return peak


def peak_cuda_bytes(fn: Callable[[], object], device=None) -> int:
    """Peak CUDA bytes allocated while `fn()` runs, over the level when it started."""
    device = torch.device(device if device is not None else "cuda")
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    del result
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - start)


def peak_bytes(fn: Callable[[], object], device="cpu") -> int:
    """`peak_cuda_bytes` on a CUDA device, `peak_cpu_bytes` otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return peak_cuda_bytes(fn, device)
    return peak_cpu_bytes(fn)
