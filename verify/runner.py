"""Run a variant on a `Case`: build torch tensors in the case's dtype, layout and device, call the
kernel, backpropagate, and return everything as float64 NumPy for comparison with the oracle."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.deterministic

from fused.variant import DIFFERENTIABLE, INPUTS
from verify.case import Case
from verify.dtypes import DTYPES
from verify.oracle import Results
from verify.report import PropertyFailure

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}
PER_CHANNEL_NAMES = ("bn_weight", "bn_bias", "running_mean", "running_var")


class KernelRaised(Exception):
    """The kernel under test raised (in forward or backward); `error` is what it raised. Any
    other exception inside a property is the suite's own."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{type(error).__name__} in {stage}: {error}")
        self.stage, self.error = stage, error


@contextlib.contextmanager
def uninitialized_memory_filled():
    """Fill every uninitialised allocation (torch.empty and friends) with NaN while the suite
    runs a kernel, so a kernel that reads memory it never wrote (an accumulator that is not
    zeroed, an output it only partly writes) produces NaN instead of whatever the allocator had.

    PyTorch does this only in deterministic mode; warn_only keeps nondeterministic ops legal (they
    warn, and the warnings are PyTorch's business, not the kernel's). Switching the mode costs
    about 2 ms, so it is switched once per property test (`hunt`) or replay, not per call."""
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # torch.utils.deterministic turns its module into a class instance to make this a property,
    # which torch's type stubs do not show.
    was_filling = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    was_env = os.environ.get(_INDUCTOR_ENV)
    _use_deterministic_algorithms(True, warn_only=True)
    # Inductor, if a kernel imports it during the run, reads its own flag from the environment.
    os.environ[_INDUCTOR_ENV] = "1"
    torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*does not have a deterministic implementation.*"
            )
            yield
    finally:
        _use_deterministic_algorithms(was_on, warn_only=was_warn_only)
        if was_env is None:
            os.environ.pop(_INDUCTOR_ENV, None)
        else:
            os.environ[_INDUCTOR_ENV] = was_env
        torch.utils.deterministic.fill_uninitialized_memory = was_filling  # type: ignore[attr-defined]


_INDUCTOR_ENV = "TORCHINDUCTOR_DETERMINISTIC"


def _use_deterministic_algorithms(mode: bool, *, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms` without importing Inductor to set its flag: that
    import (torch._dynamo and all) is about 2 s, a third of a worker's start-up, and most runs
    never compile. Inductor's flag is set here when it is loaded, and read from
    TORCHINDUCTOR_DETERMINISTIC when it is loaded later (`uninitialized_memory_filled`)."""
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = mode  # type: ignore[attr-defined]


def to_torch(
    array,
    case: Case,
    *,
    layout: str | None = None,
    requires_grad: bool = False,
    dtype: str | None = None,
):
    """A tensor holding `array` in `dtype` (default: the case's) on the case's device, laid out
    as `layout` (default: the case's).

    "strided" is a view that skips every other element of a buffer whose gaps hold NaN, so a kernel
    that reads memory it was not given, or assumes contiguity, produces NaN or wrong values.
    "expanded" and "broadcast" are stride-0 views of one value and of one sample (the array must
    hold that: see `verify.values`); "same" is the case's layout."""
    if array is None:
        return None
    layout = case.layout if layout in (None, "same") else layout
    torch_dtype, device = TORCH_DTYPES[dtype or case.dtype], torch.device(case.device)
    # A copy: the kernel may write into its inputs (a bug the suite must see, not suffer), and the
    # case's arrays are read-only views the oracle keeps reading.
    base = torch.from_numpy(np.array(array, order="C")).to(device=device, dtype=torch_dtype)
    if layout == "expanded":
        tensor = base.reshape(-1)[:1].reshape((1,) * base.dim()).expand(base.shape)
    elif layout == "broadcast":
        tensor = base[:1].expand(base.shape)
    elif layout == "channels_last" and base.dim() == 4:
        tensor = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        buffer = torch.full(
            base.shape[:-1] + (2 * base.shape[-1],), float("nan"), dtype=torch_dtype, device=device
        )
        buffer[..., ::2] = base
        tensor = buffer[..., ::2]
    else:
        tensor = base.clone()
    return tensor.detach().requires_grad_(requires_grad)


def to_numpy(tensor) -> np.ndarray | None:
    if tensor is None:
        return None
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


@dataclass
class Call:
    """The tensors of one call, kept so properties can inspect inputs and running stats after it."""

    inputs: dict
    out: torch.Tensor | None = None


def make_inputs(case: Case, arrays: dict, *, requires_grad: bool) -> dict:
    """The call's tensors. With `requires_grad`, the inputs named in `case.requires_grad` require
    grad; per-channel inputs are in the case's stats dtype (float32 under autocast)."""
    tensors = {}
    for name in DIFFERENTIABLE:
        tensors[name] = to_torch(
            arrays[name],
            case,
            requires_grad=requires_grad and name in case.requires_grad,
            dtype=case.stats_dtype if name in PER_CHANNEL_NAMES else None,
        )
    # Running stats are buffers the kernel updates in place: plain contiguous tensors.
    for name in ("running_mean", "running_var"):
        tensors[name] = to_torch(arrays[name], case, layout="contiguous", dtype=case.stats_dtype)
    tensors["grad_out"] = to_torch(arrays["grad_out"], case, layout=case.grad_layout)
    return tensors


def positional(tensors: dict) -> tuple:
    """The positional arguments of a `Variant` call from the tensors of a case."""
    return tuple(tensors[name] for name in INPUTS)


def call_variant(variant, case: Case, tensors: dict, **overrides):
    """The kernel's forward on `tensors` with the case's keyword arguments; anything it raises
    comes out as `KernelRaised`."""
    try:
        return variant(*positional(tensors), **dict(case.kwargs(), **overrides))
    except Exception as error:  # noqa: BLE001 - whatever the kernel raises is the finding
        raise KernelRaised("forward", error) from error


def backward(out, grad_out) -> None:
    """`out.backward(grad_out)` through the kernel's backward; errors come out as `KernelRaised`."""
    try:
        out.backward(grad_out)
    except Exception as error:  # noqa: BLE001
        raise KernelRaised("backward", error) from error


def differentiable(tensors: dict) -> list:
    """Names of the inputs that require grad in this call."""
    return [n for n in DIFFERENTIABLE if tensors[n] is not None and tensors[n].requires_grad]


class ContractViolation(AssertionError):
    """The kernel broke the calling contract (no graph, wrong shape, a gradient where none was
    asked for): a finding about the kernel, reported as such."""


def kernel_failure(
    error: KernelRaised | ContractViolation, variant_name: str, prop: str, case: Case
) -> PropertyFailure:
    """The finding a kernel's exception or contract breach is. Its cause is what the kernel
    raised, so that the report shows the kernel's own traceback."""
    if isinstance(error, KernelRaised):
        cause: BaseException = error.error
        what = f"raised {type(cause).__name__} in {error.stage} on a legal case: {cause}"
    else:
        cause, what = error, f"broke the calling contract: {error}"
    failure = PropertyFailure(variant_name, prop, case, [what])
    failure.__cause__ = cause
    return failure


def forward(variant, case: Case, tensors: dict, *, graph: bool):
    """The kernel's forward on `tensors` under the caller's grad mode, its output checked against
    the calling contract: a Tensor of the case's output shape, with an autograd graph when `graph`
    (autograd on and some input requires grad)."""
    out = call_variant(variant, case, tensors)
    if not isinstance(out, torch.Tensor):
        raise ContractViolation(f"returned {type(out).__name__}, expected a Tensor")
    if tuple(out.shape) != case.out_shape:
        raise ContractViolation(f"output shape {tuple(out.shape)}, expected {case.out_shape}")
    if graph and out.grad_fn is None:
        raise ContractViolation(
            "returned an output with no autograd graph although "
            f"{differentiable(tensors)} require grad"
        )
    return out


def accumulated_gradients(tensors: dict) -> dict:
    """The `.grad` autograd accumulated into each input that requires grad, as float64 NumPy
    (`grad_<name>`); an input that does not require grad must have none."""
    wanted = differentiable(tensors)
    grads = {}
    for name in DIFFERENTIABLE:
        tensor = tensors[name]
        if tensor is None:
            continue
        if name not in wanted:
            if tensor.grad is not None:
                raise ContractViolation(f"{name} does not require grad, yet got a gradient")
            continue
        # autograd leaves .grad as None for an input the output does not depend on: zero.
        grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
        grads["grad_" + name] = to_numpy(grad)
    return grads


def gradients_of(out, tensors: dict, grad_out, *, retain_graph: bool = False) -> dict:
    """`torch.autograd.grad` of `out` with `grad_out` for the inputs that require grad
    (`grad_<name>`: the tensors autograd returns, to be read when the caller chooses), leaving
    `.grad` alone; errors come out as `KernelRaised`."""
    wanted = differentiable(tensors)
    try:
        grads = torch.autograd.grad(
            out,
            [tensors[n] for n in wanted],
            grad_out,
            retain_graph=retain_graph,
            allow_unused=True,
        )
    except Exception as error:  # noqa: BLE001 - whatever the kernel raises is the finding
        raise KernelRaised("backward", error) from error
    return {
        "grad_" + name: grad if grad is not None else torch.zeros_like(tensors[name])
        for name, grad in zip(wanted, grads, strict=True)
    }


def running_stats(tensors: dict) -> dict:
    """The running statistics as they are now, as float64 NumPy (None where absent)."""
    return {name: to_numpy(tensors[name]) for name in ("running_mean", "running_var")}


def run(variant, case: Case, arrays: dict, *, gradients: bool = True) -> tuple[Results, Call]:
    """Forward (and backward with the case's grad_out) through `variant`. Running stats are
    read after the whole call, backward included."""
    tensors = make_inputs(case, arrays, requires_grad=gradients)
    with torch.set_grad_enabled(gradients):
        out = forward(variant, case, tensors, graph=gradients)
    results = Results(out=to_numpy(out))
    if gradients:
        backward(out, tensors["grad_out"])
        for name, grad in accumulated_gradients(tensors).items():
            setattr(results, name, grad)
    # Read after backward: a kernel that recomputes batch norm in backward (a naive checkpoint)
    # must not update the running stats a second time.
    for name, stat in running_stats(tensors).items():
        setattr(results, name, stat)
    return results, Call(inputs=tensors, out=out)


def function_of_parameters(variant, case: Case, tensors: dict):
    """(fn, parameters): fn(*parameters) calls the variant with those differentiable inputs and
    fresh copies of the running stats, so repeated evaluations (gradcheck, finite differences)
    all see the same state."""
    names = [n for n in DIFFERENTIABLE if tensors[n] is not None]

    def fn(*parameters):
        call = dict(tensors, **dict(zip(names, parameters, strict=True)))
        for stat in ("running_mean", "running_var"):
            if tensors[stat] is not None:
                call[stat] = tensors[stat].clone()
        return call_variant(variant, case, call)

    return fn, tuple(tensors[n] for n in names)
