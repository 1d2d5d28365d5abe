"""The `Variant` contract: how a kernel under test is described to the suite.

A variant is a function with the signature of `reference.conv_bn` (torch tensors in, the BN output
out, running stats updated in place) plus the batch-norm form it implements and the optional
features it handles. The suite draws only the features a variant declares, so a kernel that handles
a subset is still fuzzed on everything it claims; calling a variant with an undeclared feature
raises `UnsupportedFeatureError` instead of silently computing something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

FORMS = ("tutorial", "standard")

# Features every variant must handle when declared; the suite passes the default otherwise.
CONV_FEATURES = frozenset({"stride", "padding", "dilation", "groups", "bias"})
BN_FEATURES = frozenset({"affine", "running_stats"})
# Extensions: dtypes beyond float32/float64, devices, and double backward; "autocast": half
# activations with float32 bn_weight/bn_bias/running stats, as nn.BatchNorm2d has them under
# torch.autocast; "nondeterministic": two identical calls may differ in rounding (atomics).
# "compile": the function works under torch.compile(fullgraph=True) with the same numbers as in
# eager mode (forward, gradients, running statistics); verify/properties/compile.py checks it.
EXTRA_FEATURES = frozenset(
    {"float16", "bfloat16", "cuda", "double_backward", "autocast", "nondeterministic", "compile"}
)
FEATURES = CONV_FEATURES | BN_FEATURES | EXTRA_FEATURES

# What a kernel may declare it cannot do, each with what the suite then requires instead.
# "inplace_output": the kernel needs its own output in backward (InPlace-ABN recovers the
# normalised values from it), so a program that modifies the output in place before backward
# (ReLU(inplace=True), `out += identity`) cannot be served: backward must then raise autograd's
# in-place error (save the output with ctx.save_for_backward), never return wrong numbers.
LIMITATIONS = {
    "inplace_output": "in-place ops on its output before backward make backward raise "
    "autograd's in-place error",
}

# The tensors a `Variant` fn takes, positionally and in this order; a gradient flows to the first
# five.
INPUTS = ("x", "weight", "bias", "bn_weight", "bn_bias", "running_mean", "running_var")
DIFFERENTIABLE = INPUTS[:5]


class UnsupportedFeatureError(NotImplementedError):
    """A variant was called with an argument whose feature it does not declare in `supports`."""


class VariantUnavailableError(RuntimeError):
    """A variant that cannot run here (its `unavailable` says why) was called."""


def _is_default_pair(value, default: int) -> bool:
    if isinstance(value, (tuple, list)):
        return all(int(v) == default for v in value)
    return int(value) == default


def requested_features(**arguments) -> frozenset:
    """The optional features a call uses, judged from its keyword arguments (any subset of the
    `Variant` fn's, more are ignored): an option away from its neutral value, or a tensor given."""

    def given(*names):
        return any(arguments.get(name) is not None for name in names)

    used = {
        feature
        for feature, neutral in (("stride", 1), ("padding", 0), ("dilation", 1))
        if not _is_default_pair(arguments.get(feature, neutral), neutral)
    }
    if int(arguments.get("groups", 1)) != 1:
        used.add("groups")
    if given("bias"):
        used.add("bias")
    if given("bn_weight", "bn_bias"):
        used.add("affine")
    if given("running_mean", "running_var", "num_batches_tracked"):
        used.add("running_stats")
    if not arguments.get("training", True):
        used.add("running_stats")
    return frozenset(used)


@dataclass(frozen=True)
class Variant:
    """A fused Conv2d+BatchNorm kernel under test.

    `fn(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None, running_var=None, *,
    stride=1, padding=0, dilation=1, groups=1, training=True, momentum=0.1, eps=1e-3) -> Tensor`.
    `supports` names the optional features of `FEATURES` that `fn` handles; an unknown name is an
    error, because a misspelt feature would silently never be tested.
    """

    name: str
    fn: Callable
    form: str = "tutorial"
    supports: frozenset = field(default_factory=frozenset)
    # Extension: a variant that claims to save activation memory is also checked to save fewer
    # bytes for backward, and keep fewer alive, than eager Conv2d+BatchNorm2d
    # (verify/test_saved_memory.py).
    memory_saving: bool = False
    # Extension: the kernel is written in Triton. Without a GPU its kernels run on Triton's CPU
    # interpreter (the pytest plugin sets TRITON_INTERPRET=1 before any variant is imported), so
    # the suite skips what would only measure the interpreter (benchmarks).
    triton: bool = False
    # Extension: why the variant cannot run here (say, an optional dependency is missing); the
    # suite then skips all of its tests with this reason instead of failing them.
    unavailable: str = ""
    # Extension: what the kernel declares it cannot do (names of `LIMITATIONS`); the suite checks
    # that it fails cleanly there instead (verify/properties/programs.py) and the report names it.
    limitations: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Variant name must be a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(
                f"Variant {self.name!r}: fn must be callable, got {type(self.fn).__name__}"
            )
        if self.form not in FORMS:
            raise ValueError(
                f"Variant {self.name!r}: form must be one of {FORMS}, got {self.form!r}"
            )
        supports = _names(self.name, "supports", self.supports, FEATURES)
        object.__setattr__(self, "supports", supports)
        object.__setattr__(
            self, "limitations", _names(self.name, "limitations", self.limitations, LIMITATIONS)
        )
        if not isinstance(self.unavailable, str):
            raise TypeError(
                f"Variant {self.name!r}: unavailable must be a string (the reason), "
                f"got {type(self.unavailable).__name__}"
            )

    def check_features(self, **kwargs) -> None:
        """Raise UnsupportedFeatureError if the call's arguments use an undeclared feature."""
        missing = sorted(requested_features(**kwargs) - self.supports)
        if missing:
            raise UnsupportedFeatureError(
                f"variant {self.name!r} does not declare feature(s) {missing} "
                f"(supports={sorted(self.supports)}); add them to `supports` if the kernel "
                "handles them"
            )

    def __call__(self, *args, **kwargs):
        if self.unavailable:
            raise VariantUnavailableError(
                f"variant {self.name!r} is unavailable: {self.unavailable}"
            )
        self.check_features(**dict(zip(INPUTS, args, strict=False)), **kwargs)
        return self.fn(*args, **kwargs)

    def __repr__(self):
        extras = (
            (", triton=True" if self.triton else "")
            + (f", limitations={sorted(self.limitations)}" if self.limitations else "")
            + (f", unavailable={self.unavailable!r}" if self.unavailable else "")
        )
        return (
            f"Variant({self.name!r}, form={self.form!r}, supports={sorted(self.supports)}{extras})"
        )


def _names(variant: str, field_name: str, names, known) -> frozenset:
    """`names` as a frozenset, each one of `known`: a misspelt name would silently never be
    tested (a feature) or never be allowed for (a limitation)."""
    if isinstance(names, str):
        raise TypeError(
            f"Variant {variant!r}: {field_name} must be an iterable of names, "
            f"not the string {names!r} (did you mean {{{names!r}}}?)"
        )
    names = frozenset(names)
    unknown = sorted(names - frozenset(known))
    if unknown:
        what = "feature(s)" if field_name == "supports" else "name(s)"
        raise ValueError(
            f"Variant {variant!r}: unknown {what} {unknown} in {field_name}; known: {sorted(known)}"
        )
    return names
