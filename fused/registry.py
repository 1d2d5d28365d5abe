"""The built-in variants: what `pytest verify` checks when no `--variant` is given.

Each variant declares only the features it was seen to handle (tests/fused/test_registry.py runs
every declared feature, dtype and double backward against the NumPy oracle):

* ``tutorial_function``: the tutorial's `FusedConvBN2DFunction` (tutorial form); it handles no
  optional feature (no bias, stride, ..., no affine, no running stats) and stays fp32/fp64.
* ``fused_tutorial`` / ``fused_standard``: `fused.memory_saving.memory_saving_conv_bn` with its form
  fixed; every conv and BN feature, float16 and bfloat16 on CPU; once-differentiable (no double
  backward).
* ``custom_op_standard``: the same kernel as a `torch.library` custom op,
  `memory_saving_conv_bn_op`.
* ``eager``: `F.conv2d` + `F.batch_norm` (standard), the unfused baseline; every feature,
  double backward, CUDA. No half types: `pytest verify` found PyTorch 2.13's CPU half-precision
  convolutions wrong on legal geometries (float16 forward segfaults; bfloat16 channels_last
  weight gradients read uninitialised memory); the fused kernels route them through float32.
* ``checkpoint``: the eager computation under non-reentrant `torch.utils.checkpoint`, the
  memory-saving baseline; every feature, double backward, CUDA (no half types, as eager).

* ``triton_standard`` / ``triton_tutorial``: `fused.triton_conv_bn.triton_conv_bn`, the same
  memory-saving design with its batch norm written in Triton (split Welford statistics, fused
  normalise+affine, backward reductions and input gradient); every conv and BN feature, float16,
  bfloat16 and CUDA (natively compiled there; on the CPU through Triton's interpreter). When
  triton is not installed they are still listed, with `unavailable` saying so, and the suite skips
  them with that reason.

``compile``: fused_tutorial, fused_standard, custom_op_standard (which trace `fused.traceable`'s
plain ops under torch.compile) and eager; not the tutorial's function, checkpoint or Triton
(not measured under compile).

``memory_saving=True`` marks the variants that save fewer bytes for backward, and keep fewer
alive, than eager.
"""

from __future__ import annotations

from dataclasses import replace

from fused.baselines import checkpoint_conv_bn, eager_conv_bn
from fused.custom_op import memory_saving_conv_bn_op
from fused.entry import with_form
from fused.memory_saving import memory_saving_conv_bn
from fused.triton_support import triton_missing_reason
from fused.tutorial import tutorial_variant_fn
from fused.variant import BN_FEATURES, CONV_FEATURES, Variant

__all__ = [
    "BUILTIN_VARIANTS",
    "TRITON_VARIANTS",
    "builtin_variant",
]

_ALL_CONV_BN = CONV_FEATURES | BN_FEATURES
# Half activations; "autocast": with float32 bn_weight/bn_bias/running stats beside them.
_LOW_PRECISION = frozenset({"float16", "bfloat16", "autocast"})


_FUSED_SUPPORTS = _ALL_CONV_BN | _LOW_PRECISION


def _fused(name: str, entry, form: str, supports: frozenset) -> Variant:
    """A memory-saving fused kernel's entry point with its form fixed, as a variant."""
    return Variant(name, with_form(entry, form), form=form, supports=supports, memory_saving=True)


_TRITON_MISSING = triton_missing_reason()


def _triton_variants() -> tuple:
    if _TRITON_MISSING:
        # Listed anyway, so `pytest verify` shows them skipped with the reason, not just absent.
        def fn(*args, **kwargs):
            raise AssertionError("unreachable: Variant.__call__ refuses unavailable variants")

        return tuple(
            Variant(
                f"triton_{form}",
                fn,
                form=form,
                supports=_FUSED_SUPPORTS | {"cuda"},
                memory_saving=True,
                triton=True,
                unavailable=_TRITON_MISSING,
            )
            for form in ("standard", "tutorial")
        )
    from fused.triton_conv_bn import triton_conv_bn

    return tuple(
        replace(
            _fused(f"triton_{form}", triton_conv_bn, form, _FUSED_SUPPORTS | {"cuda"}), triton=True
        )
        for form in ("standard", "tutorial")
    )


BUILTIN_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "tutorial_function",
        tutorial_variant_fn,
        form="tutorial",
        supports=frozenset(),
        memory_saving=True,
    ),
    # These trace `fused.traceable`'s plain ops under torch.compile (`fused.entry`).
    _fused("fused_tutorial", memory_saving_conv_bn, "tutorial", _FUSED_SUPPORTS | {"compile"}),
    _fused("fused_standard", memory_saving_conv_bn, "standard", _FUSED_SUPPORTS | {"compile"}),
    _fused(
        "custom_op_standard", memory_saving_conv_bn_op, "standard", _FUSED_SUPPORTS | {"compile"}
    ),
    Variant(
        "eager",
        eager_conv_bn,
        form="standard",
        supports=_ALL_CONV_BN | {"double_backward", "cuda", "compile"},
    ),
    Variant(
        "checkpoint",
        checkpoint_conv_bn,
        form="standard",
        supports=_ALL_CONV_BN | {"double_backward", "cuda"},
        memory_saving=True,
    ),
) + _triton_variants()

# The Triton kernels alone: `pytest verify --variant fused.registry:TRITON_VARIANTS`.
TRITON_VARIANTS: tuple[Variant, ...] = tuple(v for v in BUILTIN_VARIANTS if v.triton)

_BY_NAME = {v.name: v for v in BUILTIN_VARIANTS}
assert len(_BY_NAME) == len(BUILTIN_VARIANTS), "duplicate built-in variant names"


def builtin_variant(name: str) -> Variant:
    """The built-in variant called `name`; KeyError (listing the names) if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"no built-in variant {name!r}; built-in variants: {', '.join(_BY_NAME)}"
        ) from None
