"""Load the variants a run is about: `--variant SPEC` (repeatable) or every built-in one.

SPEC is `package.module:attr` or `path/to/file.py:attr`; attr is a `fused.Variant` or a list
(tuple) of them."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

import fused
import verify
from fused.variant import Variant
from verify.report import BUILTIN_SPEC


class VariantSpecError(ValueError):
    """A --variant SPEC that cannot be loaded; the message (one line) says why and what SPEC
    looks like."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


def _load_module(spec_text: str, target: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise VariantSpecError(f"--variant {spec_text}: no such file {target!r}")
        name = "convbn_user_variant_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise VariantSpecError(f"--variant {spec_text}: cannot load {target!r} as a module")
        module = importlib.util.module_from_spec(spec)
        # As `python file.py` does: a kernel file imports the helpers beside it.
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        sys.modules[name] = module
        with _import_errors(spec_text, target):
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return module
    with _import_errors(spec_text, target):
        return importlib.import_module(target)


@contextlib.contextmanager
def _import_errors(spec_text: str, target: str):
    """Whatever importing the user's module raises becomes one line that says where and why."""
    try:
        yield
    except SyntaxError as error:
        where = f"{error.filename}, line {error.lineno}" if error.filename else target
        raise VariantSpecError(
            f"--variant {spec_text}: syntax error in {where}: {error.msg}"
        ) from None
    except ModuleNotFoundError as error:
        if error.name and target.split(".")[0] == error.name.split(".")[0]:
            raise VariantSpecError(
                f"--variant {spec_text}: cannot import module {target!r}: "
                f"{error} (not on sys.path? a file path works too: "
                "path/to/file.py:attr)"
            ) from None
        raise VariantSpecError(
            f"--variant {spec_text}: importing {target} failed: {type(error).__name__}: {error}"
        ) from None
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's module is arbitrary code
        where = _innermost_user_frame(error)
        raise VariantSpecError(
            f"--variant {spec_text}: importing {target} raised "
            f"{type(error).__name__}{where}: {error}"
        ) from None


# The suite's own packages: an error raised in them on the user's behalf (a misspelt feature in
# `Variant(supports=...)`, say) is located at the user's line that called them.
_SUITE_DIRS = tuple(
    str(Path(package.__path__[0]).resolve()) + os.sep for package in (fused, verify)
)


def _innermost_user_frame(error: BaseException) -> str:
    """' at FILE:LINE' for the deepest frame outside the import machinery and the suite's own
    packages, when there is one."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if "importlib" not in f.filename
        and not f.filename.startswith("<")  # generated code: a dataclass's __init__
        and not str(Path(f.filename).resolve()).startswith(_SUITE_DIRS)
    ]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def load_variants(spec: str) -> list[Variant]:
    """The Variant(s) named by SPEC."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise VariantSpecError(
            f"--variant {spec}: expected 'package.module:attr' or 'path/to/file.py:attr'"
        )
    module = _load_module(spec, target)
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise VariantSpecError(f"--variant {spec}: {target} has no attribute {attr!r}") from None
    variants = list(value) if isinstance(value, (list, tuple)) else [value]
    if not variants:
        raise VariantSpecError(f"--variant {spec}: {attr} is an empty list: nothing to verify")
    is_list = isinstance(value, (list, tuple))
    for index, v in enumerate(variants):
        if not isinstance(v, Variant):
            where = f"{attr}[{index}]" if is_list else attr
            raise VariantSpecError(
                f"--variant {spec}: {where} holds {type(v).__name__}, not a "
                "fused.Variant (wrap your kernel: "
                "Variant(name, fn, form, supports))"
            )
    return variants


def load_all(specs: list[str] | None) -> list[tuple[str, Variant]]:
    """(SPEC, variant) for every variant of every SPEC (the built-in ones without any), in order;
    the SPEC is what a replay line names. Variant names must be unique."""
    loaded = [(spec, v) for spec in specs or [BUILTIN_SPEC] for v in load_variants(spec)]
    names = [v.name for _, v in loaded]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VariantSpecError(
            f"--variant: duplicate variant names {duplicates}; names must be unique"
        )
    return loaded


def select(specs: list[str] | None) -> list[Variant]:
    """The variants of `load_all`, without their SPECs."""
    return [v for _, v in load_all(specs)]
