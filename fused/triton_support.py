"""Where Triton kernels run: natively on a GPU, or on the CPU through Triton's interpreter.

`@triton.jit` decides between a compiled kernel and the interpreter (`TRITON_INTERPRET=1`, which
executes the kernel's Python body with NumPy, one program instance after another) when the
decorator runs, that is when the module defining the kernel is imported. So the choice has to be
made before any kernel module is imported, and even before triton itself is imported (triton's own
@jit helpers, tl.sum say, are decorated by `import triton`). `configure_interpreter` makes it,
and everything that imports Triton on behalf of a user (the pytest plugin, `verify.replay`, the
registry, the built-in Triton kernel module itself) calls it first. This module imports triton
only in `triton_missing_reason` and `check_language_mode`.
"""

from __future__ import annotations

import os

ENV = "TRITON_INTERPRET"
INSTALL_HINT = "pip install 'convbn-verify[triton]'"


def _gpu_available() -> bool:
    if not _torch_build_has_gpu_backend():
        return False
    import torch

    return torch.cuda.is_available()


def _torch_build_has_gpu_backend() -> bool:
    """False only when the installed torch is certainly a CPU-only build (torch/version.py, read
    without importing torch: `cuda` and `hip` both None), where `torch.cuda.is_available()` is
    False on any machine. Importing torch costs a second or more, and the pytest controller
    process asks this question without ever running a kernel."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return True  # let `import torch` say what is wrong
    try:
        tree = ast.parse((Path(spec.origin).parent / "version.py").read_text())
    except (OSError, SyntaxError):
        return True
    backends = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("cuda", "hip"):
            backends[target.id] = node.value
    if set(backends) != {"cuda", "hip"}:
        return True
    return not all(isinstance(v, ast.Constant) and v.value is None for v in backends.values())


def configure_interpreter(force: bool = False) -> bool:
    """Set TRITON_INTERPRET=1 when there is no CUDA device (compiled Triton cannot run without a
    GPU) or when `force` is true; an explicit TRITON_INTERPRET in the environment is respected
    unless forced. Returns whether Triton kernels imported from now on are interpreted."""
    if force or (ENV not in os.environ and not _gpu_available()):
        os.environ[ENV] = "1"
    return interpreting()


def interpreting() -> bool:
    """Whether `@triton.jit` kernels defined from now on run on Triton's CPU interpreter."""
    return os.environ.get(ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def triton_missing_reason() -> str:
    """'' when triton imports; otherwise why not, with how to install it. Sets the interpreter up
    first: importing triton decorates triton.language's own @jit functions, so this import has
    to see the final TRITON_INTERPRET too."""
    configure_interpreter()
    try:
        import triton  # noqa: F401
    except ImportError as error:
        if getattr(error, "name", None) == "triton":
            return f"triton is not installed ({INSTALL_HINT})"
        return f"triton cannot be imported ({error}); reinstall it ({INSTALL_HINT})"
    return ""


def check_language_mode() -> None:
    """Raise if triton.language was imported in the other mode than the kernels will run in (its
    @jit helpers such as tl.sum then fail inside interpreted kernels, or vice versa)."""
    import triton.language as tl

    if is_interpreted(tl.sum) != interpreting():
        raise RuntimeError(
            f"triton was imported with TRITON_INTERPRET {'off' if interpreting() else 'on'} and it "
            f"is {'on' if interpreting() else 'off'} now: set it before anything imports triton "
            "(fused.triton_support.configure_interpreter() does, and pytest verify calls it)"
        )


def is_interpreted(kernel) -> bool:
    """Whether a `@triton.jit` kernel object was built for the interpreter."""
    return type(kernel).__name__ == "InterpretedFunction"
