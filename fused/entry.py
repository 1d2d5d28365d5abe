"""`conv_bn_entry`: the one front of every kernel in `fused/`.

A kernel here is a function of one validated `ConvBNCall`. Its entry point, the function users
and the suite call, takes the contract's `Variant` fn signature (extended with `form` and
`num_batches_tracked`), written once, in `fused.arguments.check_conv_bn_arguments`. The entry
point does, in this order, what every kernel would otherwise restate:

1. validate the call (ValueError; a wrong number or name of arguments is a TypeError that names
   the entry point), and refuse a form or a feature the kernel does not compute, before anything
   is modified;
2. while `torch.compile` traces, hand the call to the kernel's traceable twin, if it has one
   (`fused.traceable`: plain ops the compiler's partitioner sees through);
3. otherwise turn `num_batches_tracked` into the running statistics' blend factor the way
   `nn.BatchNorm2d.forward` does (momentum=None: 1 / the count including this batch), so no kernel
   sees the counter;
4. run the kernel, and count the batch once it has succeeded.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch
from torch import Tensor

from fused.arguments import ConvBNCall, check_conv_bn_arguments
from fused.variant import FORMS, UnsupportedFeatureError, requested_features

__all__ = ["conv_bn_entry", "with_form", "compiling"]

Kernel = Callable[[ConvBNCall], Tensor]

_VALIDATOR = check_conv_bn_arguments.__name__
_SIGNATURE = inspect.signature(check_conv_bn_arguments)


def compiling() -> bool:
    """True while torch.compile (dynamo) traces the caller."""
    return torch.compiler.is_compiling()


def _blend_factor(call: ConvBNCall) -> ConvBNCall:
    """The call with the counter taken out and momentum=None resolved to 1 / (count + 1), the
    factor nn.BatchNorm2d blends this batch with; the count is written after the kernel ran."""
    counter, norm = call.num_batches_tracked, call.norm
    if counter is None:
        return call
    momentum = norm.momentum
    if momentum is None and norm.training:
        momentum = 1.0 / (float(counter.item()) + 1.0)
    return call._replace(num_batches_tracked=None, norm=norm._replace(momentum=momentum))


def conv_bn_entry(
    kernel: Kernel,
    *,
    name: str,
    doc: str,
    form: str = "standard",
    forms: tuple = FORMS,
    supports: Optional[frozenset] = None,
    under_compile: Optional[Kernel] = None,
    counts_batches: bool = False,
    module: Optional[str] = None,
) -> Callable[..., Tensor]:
    """The entry point of `kernel`: `name(x, weight, bias=None, ..., form=form,
    num_batches_tracked=None) -> Tensor`.

    `forms`: the batch-norm forms the kernel computes (another is a ValueError). `supports`: the
    optional features it handles, None for all (another is an `UnsupportedFeatureError`).
    `under_compile`: the kernel to trace instead while torch.compile traces the call.
    `counts_batches`: the kernel reads and increments `num_batches_tracked` itself (the traceable
    kernel does, without reading the count back to Python). `module`: where the entry point is
    defined, for pickling and introspection (the kernel's module by default).
    """
    if form not in forms:
        raise ValueError(f"{name}: default form {form!r} is not among its forms {forms}")

    def entry(*args, **kwargs):
        kwargs.setdefault("form", form)
        try:
            call = check_conv_bn_arguments(*args, **kwargs)
        except TypeError as error:
            # Only the binding of the arguments raises TypeError here: name the entry point.
            raise TypeError(str(error).replace(f"{_VALIDATOR}()", f"{name}()")) from None
        if call.norm.form not in forms:
            raise ValueError(
                f"{name} computes the {' and '.join(map(repr, forms))} form only, "
                f"got form={call.norm.form!r}"
            )
        if supports is not None:
            unsupported = requested_features(**call.keywords()) - supports
            if unsupported:
                raise UnsupportedFeatureError(
                    f"{name} handles the optional features {sorted(supports)} only; "
                    f"called with {sorted(unsupported)}"
                )
        if under_compile is not None and compiling():
            return under_compile(call)
        if counts_batches:
            return kernel(call)
        out = kernel(_blend_factor(call))
        # Counted once the kernel has succeeded: a call that raises modifies nothing.
        if call.num_batches_tracked is not None and call.norm.training:
            call.num_batches_tracked.add_(1)
        return out

    # A code object of its own: torch.compile keeps its caches and recompile limit per code
    # object, and tracebacks and profiles name the entry point.
    entry.__code__ = entry.__code__.replace(co_name=name, co_qualname=name)
    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = module or kernel.__module__
    entry.__doc__ = doc
    parameters = [
        p.replace(default=form) if p.name == "form" else p for p in _SIGNATURE.parameters.values()
    ]
    entry.__signature__ = _SIGNATURE.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=Tensor
    )
    # What `with_form` needs to derive an entry point with another default form.
    entry.options = dict(  # type: ignore[attr-defined]
        supports=supports, under_compile=under_compile, counts_batches=counts_batches
    )
    entry.kernel = kernel  # type: ignore[attr-defined]
    return entry


def with_form(entry: Callable[..., Tensor], form: str) -> Callable[..., Tensor]:
    """`entry` with its batch-norm form fixed to `form`: the `Variant` fn of one form."""
    name = f"{entry.__name__}_{form}"
    return conv_bn_entry(
        entry.kernel,  # type: ignore[attr-defined]
        name=name,
        doc=f"`{entry.__name__}(..., form={form!r})`; another form is a ValueError.",
        form=form,
        forms=(form,),
        module=entry.__module__,
        **entry.options,  # type: ignore[attr-defined]
    )
