"""A `Case`: one fully determined configuration of a fused Conv2d+BatchNorm call.

A case is plain data (JSON round-trips it), so a failure can be replayed exactly from one line.
The tensors are not stored: `case.arrays()` regenerates them from `seed` and the value family,
already rounded to the case's dtype, so the oracle (float64) sees exactly the numbers the kernel
sees.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from fused.variant import DIFFERENTIABLE, requested_features
from verify.dtypes import HALF_DTYPES
from verify.values import draw_arrays

LAYOUTS = ("contiguous", "channels_last", "strided")
# Layouts of grad_out beyond x's: "same" follows x; "expanded" is one value broadcast with every
# stride 0 (what `out.sum()` or `out.mean()` hands backward); "broadcast" repeats one sample over
# the batch with a stride-0 batch dimension.
GRAD_LAYOUTS = ("same",) + LAYOUTS + ("expanded", "broadcast")
# The grad modes a kernel is called under: real training, and calibration/inference passes.
GRAD_MODES = ("enabled", "no_grad", "inference_mode")
# What the program does around the call (the `programs` property): "" is one isolated call;
# in-place ops on the output before backward (ResNet's ReLU(inplace=True), `out += identity`, a
# scaled output); two backward passes through one graph (retain_graph=True); two training steps
# accumulating into the same parameters; a layer called again and again (interleaved forwards and
# backwards, then an optimizer step that updates its parameters in place, then another call).
PROGRAMS = ("relu_inplace", "add_inplace", "mul_inplace", "retain_graph", "accumulate", "repeated")


class CaseJSONError(ValueError):
    """JSON that does not describe a Case (`Case.from_json`)."""


@dataclass(frozen=True)
class Case:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = False
    affine: bool = False
    running_stats: bool = False
    training: bool = True
    momentum: float = 0.1
    eps: float = 1e-3
    form: str = "tutorial"
    dtype: str = "float64"
    layout: str = "contiguous"
    values: str = "normal"
    seed: int = 0
    device: str = "cpu"
    steps: int = 1  # consecutive calls with fresh values (the running-stats property)
    defect: str = ""  # the bad-input scenario applied to the call (the bad-inputs property)
    # Calling context: which inputs require grad (a network's first layer: not x; a frozen
    # backbone: not the conv weight), grad_out's layout, and the grad mode of the call.
    requires_grad: tuple = DIFFERENTIABLE
    grad_layout: str = "same"
    grad_mode: str = "enabled"
    # Mixed precision as nn.BatchNorm2d has it under torch.autocast: half activations and conv
    # weight, bn_weight/bn_bias/running stats in this dtype ("" = the case's dtype).
    param_dtype: str = ""
    # The program around the call (`PROGRAMS`; "" = one isolated call).
    program: str = ""

    def __post_init__(self):
        for name in ("kernel", "stride", "padding", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "requires_grad", tuple(self.requires_grad))

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def output_hw(self) -> tuple:
        return tuple(
            (size + 2 * pad - dil * (k - 1) - 1) // st + 1
            for size, k, st, pad, dil in zip(
                (self.height, self.width),
                self.kernel,
                self.stride,
                self.padding,
                self.dilation,
                strict=True,
            )
        )

    @property
    def values_per_channel(self) -> int:
        """The batch-norm reduction length N * H_out * W_out."""
        h, w = self.output_hw
        return self.batch * h * w

    @property
    def conv_reduction(self) -> int:
        """Terms summed into one conv output: C_in/groups * kh * kw (+1 for the bias)."""
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1] + int(self.bias)

    @property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def out_shape(self) -> tuple:
        return (self.batch, self.out_channels) + self.output_hw

    def features(self) -> frozenset:
        """The optional Variant features this case exercises: those of its arguments, judged as
        the contract judges a call (`fused.variant.requested_features`), plus its dtype, device
        and mixed precision."""
        present = True  # requested_features asks only whether an optional argument is given
        used = set(
            requested_features(
                bias=present if self.bias else None,
                bn_weight=present if self.affine else None,
                running_mean=present if self.running_stats else None,
                training=self.training,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                groups=self.groups,
            )
        )
        if self.dtype in HALF_DTYPES:
            used.add(self.dtype)
        if self.device != "cpu":
            used.add("cuda")
        if self.param_dtype and self.param_dtype != self.dtype:
            used.add("autocast")
        return frozenset(used)

    @property
    def stats_dtype(self) -> str:
        """The dtype of bn_weight, bn_bias and the running statistics."""
        return self.param_dtype or self.dtype

    def size(self) -> str:
        """The size as a kernel engineer reads it: values per channel and channels."""
        h, w = self.output_hw
        return (
            f"{self.values_per_channel} values per channel (N={self.batch} x "
            f"H_out*W_out={h}x{w}), {self.out_channels} channels"
        )

    # -- tensors ------------------------------------------------------------------------------
    def arrays(self, step: int = 0) -> dict:
        """float64 arrays (x, weight, bias, bn_weight, bn_bias, running_mean, running_var,
        grad_out; None where absent), rounded to the case dtype. `step` gives fresh values for
        consecutive calls with the same configuration."""
        return draw_arrays(self, step)

    def conv_options(self) -> dict:
        """The convolution's keyword arguments (of the Variant fn and of reference.conv2d)."""
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def kwargs(self) -> dict:
        """Keyword arguments of the Variant fn / reference.conv_bn for this case."""
        return dict(
            self.conv_options(), training=self.training, momentum=self.momentum, eps=self.eps
        )

    def replace(self, **changes) -> "Case":
        return dataclasses.replace(self, **changes)

    # -- replay -------------------------------------------------------------------------------
    def to_json(self) -> str:
        """One line of JSON; the rarely-set fields are left out at their defaults, to keep replay
        lines readable (`from_json` restores the defaults)."""
        fields = dataclasses.asdict(self)
        for name in _OMITTED_AT_DEFAULT:
            if getattr(self, name) == _DEFAULTS[name]:
                del fields[name]
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, **defaults) -> "Case":
        """The Case of `to_json`'s JSON. A field the JSON leaves out takes its value from
        `defaults`, else the field's default. Raises CaseJSONError, whose message (one line) says
        what is wrong: not JSON, unknown or missing fields, a value of the wrong type."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise CaseJSONError(f"not valid JSON: {error}") from None
        if not isinstance(fields, dict):
            raise CaseJSONError(
                f"expected a JSON object of Case fields, got {type(fields).__name__}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise CaseJSONError(f"unknown Case field(s) {unknown}; known: {sorted(known)}")
        fields = {**defaults, **fields}
        missing = [name for name in _REQUIRED if name not in fields]
        if missing:
            raise CaseJSONError(f"missing Case field(s) {missing}")
        for name, value in fields.items():
            words, fits = _FIELD_JSON[name]
            if not fits(value):
                raise CaseJSONError(f"Case field {name!r} must be {words}, got {json.dumps(value)}")
        return cls(**fields)

    def describe(self) -> str:
        parts = [
            f"x{self.x_shape}",
            f"weight{self.weight_shape}",
            f"out{self.out_shape}",
            f"stride={self.stride}",
            f"padding={self.padding}",
            f"dilation={self.dilation}",
            f"groups={self.groups}",
            f"bias={self.bias}",
            f"affine={self.affine}",
            f"running_stats={self.running_stats}",
            f"training={self.training}",
            f"momentum={self.momentum}",
            f"eps={self.eps}",
            f"form={self.form}",
            f"dtype={self.dtype}",
            f"layout={self.layout}",
            f"values={self.values}",
            f"seed={self.seed}",
            f"device={self.device}",
        ]
        if self.steps != 1:
            parts.append(f"steps={self.steps}")
        if self.defect:
            parts.append(f"defect={self.defect}")
        if self.requires_grad != DIFFERENTIABLE:
            parts.append(f"requires_grad={list(self.requires_grad)}")
        if self.grad_layout != "same":
            parts.append(f"grad_layout={self.grad_layout}")
        if self.grad_mode != "enabled":
            parts.append(f"grad_mode={self.grad_mode}")
        if self.param_dtype:
            parts.append(f"param_dtype={self.param_dtype}")
        if self.program:
            parts.append(f"program={self.program}")
        return ", ".join(parts)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Case)}
_OMITTED_AT_DEFAULT = (
    "steps",
    "defect",
    "requires_grad",
    "grad_layout",
    "grad_mode",
    "param_dtype",
    "program",
)
_REQUIRED = tuple(f.name for f in dataclasses.fields(Case) if f.default is dataclasses.MISSING)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no size


def _is_list(value, of) -> bool:
    return isinstance(value, (list, tuple)) and all(map(of, value))


# What each field's JSON value must be, by its annotation (a string: `from __future__ import
# annotations`). Checked before the Case is built, because a wrong type gets past __post_init__
# and fails later, deep in the suite, as if it were the suite's own bug.
_JSON_KINDS = {
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: _is_int(v) or isinstance(v, float)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "tuple": ("a list of two integers", lambda v: _is_list(v, _is_int) and len(v) == 2),
}
_FIELD_JSON = {f.name: _JSON_KINDS[str(f.type)] for f in dataclasses.fields(Case)}
_FIELD_JSON["requires_grad"] = (
    "a list of input names",
    lambda v: _is_list(v, lambda name: isinstance(name, str)),
)
