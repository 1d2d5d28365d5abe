"""Memory figures of a training step: bytes saved for backward, bytes a forward keeps alive, and
peak bytes allocated.

Three measurements, with different strengths:

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

`kept_memory(forward, backward=None)`
    What a forward call leaves alive by any route, `kept_memory`'s figures: the CPU memory
    allocated during the call and still allocated after it returned (saved tensors, ``ctx``
    attributes, closures, hooks, module-level caches), less the output's storage; and, after
    backward and dropping the output, what is still allocated (memory that outlives the step).
    Exact on CPU, from the profiler's allocation and free events with their pointers; blind to
    memory allocated before the call (the inputs: a saved input costs nothing extra) and to
    allocations outside PyTorch's CPU allocator (NumPy, CUDA).

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

import gc
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch

__all__ = [
    "KeptMemory",
    "kept_memory",
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


def _profiling_cpu_allocations():
    """A profiler session that records every CPU allocation and free with its pointer and size.

    `torch.autograd.profiler.profile` directly: `torch.profiler.profile` would import
    torch._inductor on first use (~1.5 s per process)."""
    from torch.autograd.profiler import profile

    # Kineto writes two lines to stderr per session below this level; the suite profiles every
    # example of `saved_memory`, which would bury the reports' captured output. Read at its first
    # session, so setting it here is early enough; a user's own setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    return profile(use_cpu=True, profile_memory=True, use_kineto=True)


def _allocation_events(prof, marker: str = "") -> tuple:
    """(events, marker time): (time_ns, pointer, signed bytes) of every CPU allocation (+) and
    free (-) the profiler recorded, in time order, and the start time of the `record_function`
    named `marker` (None if absent). A free is sized only if its block was allocated while a
    profiler recorded memory (this session or an earlier one)."""
    try:
        from torch._C._profiler import _EventType

        tree = prof.kineto_results.experimental_event_tree()
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on torch version
        raise RuntimeError(
            f"verify.memory needs torch.profiler's event tree, not available in "
            f"torch {torch.__version__}: {exc}"
        ) from exc
    events = []
    marked = None
    stack = list(tree)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            if fields.device.type == "cpu":
                events.append((node.start_time_ns, fields.ptr, int(fields.alloc_size)))
        elif marker and node.name == marker:
            marked = node.start_time_ns
        stack.extend(node.children)
    events.sort(key=lambda e: e[0])
    return events, marked


def peak_cpu_bytes(fn: Callable[[], object]) -> int:
    """Peak CPU bytes allocated while `fn()` runs, over the level when it started (>= 0)."""
    with _profiling_cpu_allocations() as prof:
        result = fn()
        del result
    level = peak = 0
    for _, _, size in _allocation_events(prof)[0]:
        level += size
        peak = max(peak, level)
    return peak


@dataclass
class KeptMemory:
    """What a forward call left alive, from the CPU allocator's own events (see `kept_memory`)."""

    kept_bytes: int = 0
    output_bytes: int = 0
    # Sizes of the kept storages, largest first.
    kept_storages: tuple = ()
    # None when no backward was run.
    leaked_bytes: Optional[int] = None
    leaked_storages: tuple = ()


def _replay(events, live: dict) -> dict:
    """`live` (pointer -> bytes of blocks alive) after `events`; frees of blocks not in `live`
    (allocated before it was taken) are ignored."""
    live = dict(live)
    for _, ptr, size in events:
        if size > 0:
            live[ptr] = size
        else:
            live.pop(ptr, None)
    return live


def _storage_pointer(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


_FORWARD_RETURNED = "convbn-verify: forward returned"


def kept_memory(
    forward: Callable[[], torch.Tensor],
    backward: Optional[Callable[[torch.Tensor], Iterable[torch.Tensor]]] = None,
    *,
    full_collection: bool = False,
) -> KeptMemory:
    """Run `forward()` (returning the output tensor) and measure the CPU memory it leaves alive.

    `kept_bytes`: bytes of the blocks allocated while `forward()` ran that are still allocated
    once it returned, with the output (and so its autograd graph) held and every temporary of the
    call dropped, less the output's own storage. That is whatever the call keeps until backward:
    tensors saved for backward, `ctx` attributes, closures, module-level caches. Memory allocated
    before the call (its inputs) is not counted, nor are blocks freed during the call.

    With `backward`, it is then called with the output, must return the tensors its caller keeps
    (the gradients), and the output is dropped: `leaked_bytes` is what is still allocated of the
    blocks allocated during the forward (the output's included) or the backward, less those
    tensors' storages: memory that outlives the training step (a cache, a global).

    Memory held only by reference cycles is not kept: the young generations are collected after
    the forward and after dropping the output, which is cheap and frees the cycles a call makes
    (the Triton interpreter's, for one). A cycle that lived through an automatic collection
    during the call is in the oldest generation: `full_collection=True` collects that too, at
    ~0.1 s a collection in a process that has imported torch._dynamo, so confirm a figure with it
    rather than measure every call with it.

    CPU only: the profiler's allocation events of the CPU allocator, which returns every freed
    block to the system (no cache to see through), so the figures are exact. `forward` must not
    hold on to its output, nor `backward` to anything.
    """
    from torch.autograd.profiler import record_function

    generations = 2 if full_collection else 1
    gc.collect(generations)  # earlier garbage is freed now, not while the call is measured
    # One session for forward and backward: a session costs milliseconds, the marker nothing.
    held: set = set()
    with _profiling_cpu_allocations() as prof:
        out = forward()
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"forward returned {type(out).__name__}, expected a Tensor")
        output, output_bytes = _storage_pointer(out), out.untyped_storage().nbytes()
        gc.collect(generations)
        with record_function(_FORWARD_RETURNED):
            pass
        if backward is not None:
            held = {_storage_pointer(t) for t in backward(out) if t is not None}
        del out
        gc.collect(generations)
    events, returned = _allocation_events(prof, _FORWARD_RETURNED)
    if returned is None:  # pragma: no cover - depends on torch version
        raise RuntimeError(
            f"kept_memory: torch {torch.__version__}'s profiler did not record its marker"
        )
    live = _replay([e for e in events if e[0] < returned], {})
    kept = sorted((size for ptr, size in live.items() if ptr != output), reverse=True)
    report = KeptMemory(kept_bytes=sum(kept), output_bytes=output_bytes, kept_storages=tuple(kept))
    if backward is not None:
        live = _replay([e for e in events if e[0] >= returned], live)
        leaked = sorted((size for ptr, size in live.items() if ptr not in held), reverse=True)
        report.leaked_bytes = sum(leaked)
        report.leaked_storages = tuple(leaked)
    return report


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
