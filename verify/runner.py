"""Run a variant on a `Case`: build torch tensors in the case's dtype, layout and device, call the
kernel, backpropagate, and return everything as float64 NumPy for comparison with the oracle."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verify.case import Case
from verify.oracle import Results

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
                "bfloat16": torch.bfloat16}
PARAMETER_NAMES = ("x", "weight", "bias", "bn_weight", "bn_bias")


def to_torch(array, case: Case, *, layout: str | None = None, requires_grad: bool = False):
    """A tensor holding `array` in the case's dtype and device, laid out as `layout`.

    "strided" is a view that skips every other element of a buffer whose gaps hold NaN, so a kernel
    that reads memory it was not given, or assumes contiguity, produces NaN or wrong values."""
    if array is None:
        return None
    layout = layout or case.layout
    dtype, device = TORCH_DTYPES[case.dtype], torch.device(case.device)
    base = torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)
    if layout == "channels_last" and base.dim() == 4:
        tensor = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        buffer = torch.full(base.shape[:-1] + (2 * base.shape[-1],), float("nan"), dtype=dtype,
                            device=device)
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
    tensors = {name: to_torch(arrays[name], case, requires_grad=requires_grad)
               for name in PARAMETER_NAMES}
    # Running stats are buffers the kernel updates in place: plain contiguous tensors.
    for name in ("running_mean", "running_var"):
        tensors[name] = to_torch(arrays[name], case, layout="contiguous")
    tensors["grad_out"] = to_torch(arrays["grad_out"], case)
    return tensors


def call_variant(variant, case: Case, tensors: dict):
    return variant(tensors["x"], tensors["weight"], tensors["bias"], tensors["bn_weight"],
                   tensors["bn_bias"], tensors["running_mean"], tensors["running_var"],
                   **case.kwargs())


def run(variant, case: Case, arrays: dict, *, gradients: bool = True) -> tuple[Results, Call]:
    """Forward (and backward with the case's grad_out) through `variant`. Running stats are
    read after the whole call, backward included."""
    tensors = make_inputs(case, arrays, requires_grad=gradients)
    with torch.set_grad_enabled(gradients):
        out = call_variant(variant, case, tensors)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"variant {variant.name!r} returned {type(out).__name__}, expected a Tensor")
    results = Results(out=to_numpy(out))
    if gradients:
        if out.grad_fn is None:
            raise AssertionError(f"variant {variant.name!r} returned an output with no autograd "
                                 "graph although its inputs require grad")
        if out.shape != tensors["grad_out"].shape:
            raise AssertionError(f"output shape {tuple(out.shape)}, expected "
                                 f"{tuple(tensors['grad_out'].shape)}")
        out.backward(tensors["grad_out"])
        for name in PARAMETER_NAMES:
            grad_name = "grad_" + name
            tensor = tensors[name]
            if tensor is None:
                continue
            # autograd leaves .grad as None for an input the output does not depend on: zero.
            grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
            setattr(results, grad_name, to_numpy(grad))
    # Read after backward: a kernel that recomputes batch norm in backward (a naive checkpoint)
    # must not update the running stats a second time.
    results.running_mean = to_numpy(tensors["running_mean"])
    results.running_var = to_numpy(tensors["running_var"])
    return results, Call(inputs=tensors, out=out)


def function_of_parameters(variant, case: Case, tensors: dict):
    """(fn, parameters): fn(*parameters) calls the variant with those differentiable inputs and
    fresh copies of the running stats, so repeated evaluations (gradcheck, finite differences)
    all see the same state."""
    names = [n for n in PARAMETER_NAMES if tensors[n] is not None]

    def fn(*parameters):
        call = dict(tensors, **dict(zip(names, parameters)))
        for stat in ("running_mean", "running_var"):
            if tensors[stat] is not None:
                call[stat] = tensors[stat].clone()
        return call_variant(variant, case, call)

    return fn, tuple(tensors[n] for n in names)
