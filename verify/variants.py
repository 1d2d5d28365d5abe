"""Load the variants a run is about: `--variant SPEC` (repeatable) or every built-in one.

SPEC is `package.module:attr` or `path/to/file.py:attr`; attr is a `fused.Variant` or a list
(tuple) of them."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from fused.variant import Variant
from verify import report

BUILTIN_SPEC = "fused.registry:BUILTIN_VARIANTS"


class VariantSpecError(ValueError):
    """A --variant SPEC that cannot be loaded; the message says why and what SPEC looks like."""


def _load_module(target: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise VariantSpecError(f"--variant: no such file {target!r}")
        name = "convbn_user_variant_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise VariantSpecError(f"--variant: cannot import module {target!r}: {error}") from error


def load_variants(spec: str) -> list[Variant]:
    """The Variant(s) named by SPEC, remembered with their SPEC for replay lines."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise VariantSpecError(f"--variant {spec!r}: expected 'package.module:attr' or "
                               "'path/to/file.py:attr'")
    module = _load_module(target)
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise VariantSpecError(f"--variant {spec!r}: {target} has no attribute {attr!r}") from None
    variants = list(value) if isinstance(value, (list, tuple)) else [value]
    if not variants:
        raise VariantSpecError(f"--variant {spec!r}: {attr} is an empty list: nothing to verify")
    for v in variants:
        if not isinstance(v, Variant):
            raise VariantSpecError(f"--variant {spec!r}: {attr} holds {type(v).__name__}, not a "
                                   "fused.Variant (wrap your kernel: Variant(name, fn, form, supports))")
    for v in variants:
        report.VARIANT_SPECS[v.name] = spec
    return variants


def select(specs: list[str] | None) -> list[Variant]:
    variants = []
    for spec in specs or [BUILTIN_SPEC]:
        variants.extend(load_variants(spec))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VariantSpecError(f"--variant: duplicate variant names {duplicates}; names must be unique")
    return variants
