"""Planted Triton bugs: realistic tiling mistakes in the Triton kernel of `fused.triton_conv_bn`.

Each bug is one small variation of the shipped kernel, never a copy of it:

* a kernel bug is a *mutant* of `fused/triton_bn_kernels.py`: one line of its source replaced (the
  original must occur exactly once, so the gallery breaks loudly when the kernel changes), loaded
  as a module of its own and plugged into a `TritonBatchNorm` subclass (`kernels = <mutant>`);
* a host-side bug (accumulation dtype, grid) is a one-method override of `TritonBatchNorm`.

`EXPECTED[name]` maps each property that must catch the bug to a regex its failure report must
match; `CASES[name]` is an explicit case on which `verify.replay` shows the bug (tests/
test_gallery_triton.py replays it, and checks that the correct kernel passes the same case).
`LARGE[name]` says whether the bug only shows once a channel holds more values than one program
reduces (1,024): those need the suite's large size tiers to be found by `pytest verify`.

Run it by hand (TRITON_INTERPRET=1 is set up by the plugin when there is no GPU):
    pytest verify --variant tests/gallery/triton_bugs.py:ALL
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

try:  # loaded by path (pytest verify --variant tests/gallery/triton_bugs.py:ALL) from anywhere
    import fused  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fused import triton_bn_kernels
from fused.entry import with_form
from fused.registry import BUILTIN_VARIANTS
from fused.triton_bn import TritonBatchNorm
from fused.triton_conv_bn import triton_conv_bn_with
from fused.variant import BN_FEATURES, CONV_FEATURES, Variant
from verify.dtypes import HALF_DTYPES

SUPPORTS = CONV_FEATURES | BN_FEATURES | set(HALF_DTYPES)


def mutant_kernels(old: str, new: str):
    """`fused.triton_bn_kernels` with the one occurrence of `old` replaced by `new`, imported
    from a file of its own (Triton reads a kernel's source through `inspect`)."""
    source = inspect.getsource(triton_bn_kernels)
    assert source.count(old) == 1, f"mutant text must occur exactly once in the kernels: {old!r}"
    mutated = source.replace(old, new)
    digest = hashlib.sha1(mutated.encode()).hexdigest()[:12]
    name = f"convbn_triton_mutant_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(tempfile.gettempdir()) / "convbn-triton-mutants"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != mutated:
        scratch = folder / f"{name}.{os.getpid()}.tmp"
        scratch.write_text(mutated)
        os.replace(scratch, path)  # atomic: parallel runs never import a half-written file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class MissingMask(TritonBatchNorm):
    """The Welford count ignores the tail mask: the zero padding of a partial tile is counted as
    values, so the mean and variance shrink (any channel whose length is not a multiple of 256)."""

    kernels = mutant_kernels("        count += inside.to(ACC)\n", "        count += 1.0\n")


class MergeWithoutBetweenTerm(TritonBatchNorm):
    """The cross-program merge adds the partial M2s but forgets the spread of the partial means
    around the channel mean (Chan's between-chunk term): the variance is too small as soon as a
    channel is split across programs (more than 1,024 values)."""

    kernels = mutant_kernels(
        "    channel_m2 = tl.sum(m2, axis=0) + tl.sum(count * between * between, axis=0)\n",
        "    channel_m2 = tl.sum(m2, axis=0)\n",
    )


class Float16Accumulator(TritonBatchNorm):
    """Accumulates float16 inputs in float16, not float32: sums over a long channel overflow
    (65504) or stall (a count of 2,049 is not representable), so large or large-offset channels
    get NaN or wrong statistics. (bfloat16 keeps its float32 accumulator here: Triton 3.9's
    interpreter does bfloat16 arithmetic on the raw bits, so a bfloat16 accumulator would fail
    there for a reason a GPU does not share.)"""

    def accumulator(self, dtype):
        return torch.float16 if dtype == torch.float16 else super().accumulator(dtype)


class OffByOneTail(TritonBatchNorm):
    """Programs per channel by floor division (guarded against 0): the last, partial chunk of a
    channel longer than 1,024 values is never reduced."""

    def programs(self, values, chunk):
        return max(1, values // chunk)


def _variant(name: str, bn: TritonBatchNorm, form: str) -> Variant:
    fn = with_form(triton_conv_bn_with(bn, name=f"triton_conv_bn_{name}"), form)
    return Variant(name, fn, form=form, supports=SUPPORTS, memory_saving=True, triton=True)


OUT = r"out: worst element"
# A large case: 4 x 33 x 31 = 4,092 values per channel (4 programs of 1,024, the last holding
# 1,020; 16 tiles of 256, the last partial), 1x1 kernel, two channels.
_LARGE = dict(batch=4, in_channels=2, out_channels=2, height=33, width=31, kernel=[1, 1])
# A small case: 2 x 3 x 4 = 24 values per channel (one program, one partial tile).
_SMALL = dict(batch=2, in_channels=2, out_channels=2, height=3, width=4, kernel=[1, 1])


@dataclass(frozen=True)
class _Planted:
    """A planted Triton bug: its launcher, the form it computes, the properties that must catch it
    (with the regex each report must match), the case that replays it, and whether it only shows
    on channels longer than one program's chunk."""

    launcher: TritonBatchNorm
    form: str
    caught_by: dict[str, str]
    case: dict
    large_channels_only: bool


_GALLERY = {
    "triton_missing_mask": _Planted(
        MissingMask(),
        "standard",
        {"forward": OUT},
        dict(_SMALL, form="standard", dtype="float32"),
        large_channels_only=False,
    ),
    "triton_merge_without_between_term": _Planted(
        MergeWithoutBetweenTerm(),
        "tutorial",
        {"forward": OUT},
        dict(_LARGE, form="tutorial", dtype="float32", values="positive"),
        large_channels_only=True,
    ),
    "triton_float16_accumulator": _Planted(
        Float16Accumulator(),
        "standard",
        {"forward": r"dtype=float16.*\s+out: worst element"},
        dict(_LARGE, form="standard", dtype="float16", values="offset"),
        large_channels_only=True,
    ),
    "triton_off_by_one_tail": _Planted(
        OffByOneTail(),
        "standard",
        {"forward": OUT},
        dict(_LARGE, form="standard", dtype="float32"),
        large_channels_only=True,
    ),
}

ALL = [_variant(name, bug.launcher, bug.form) for name, bug in _GALLERY.items()]
EXPECTED = {name: dict(bug.caught_by) for name, bug in _GALLERY.items()}
CASES = {name: bug.case for name, bug in _GALLERY.items()}
LARGE = {name: bug.large_channels_only for name, bug in _GALLERY.items()}
# The correct kernels the bugs are variations of (the built-in Triton variants).
CORRECT = [v for v in BUILTIN_VARIANTS if v.triton]
