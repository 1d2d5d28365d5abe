"""Benchmark networks built from a `fused.Variant`, and the workloads (input + loss) they train on.

* `MnistNet`: the seed tutorial's MNIST `Net` with its two conv-BN pairs replaced by the variant:
  conv-BN(1->32, 3x3) -> ReLU -> conv-BN(32->64, 3x3) -> ReLU -> max-pool 2 -> ReLU -> flatten ->
  Linear(9216, 128) -> Dropout(0.5) -> ReLU -> Linear(128, 10) -> log_softmax, trained with
  `nll_loss`. Like the tutorial: no padding, stride 1, no conv bias, no affine BN, no running
  statistics, in-place ReLUs, eps 1e-3. Every variant can run it (it needs no optional feature).
* `ResNetStage`: a ResNet-style stage at 64 channels: a basic block (two 3x3 conv-BN, padding 1,
  identity shortcut) and a downsampling block (3x3 conv-BN with stride 2 to 128 channels, 3x3
  conv-BN, 1x1 stride-2 conv-BN shortcut), ReLU after each BN and after each residual add, as
  torchvision's BasicBlock does. It needs the variant's "stride" and "padding" features; it uses
  "affine" and "running_stats" when the variant declares them (recorded in `Workload.features`).

Each conv-BN pair (`ConvBN`) holds its own parameters and calls `variant(...)` with only the
features it was built with. Building a network whose required feature the variant lacks raises
`MissingFeatures`, which the benchmarks turn into a skip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fused import Variant

__all__ = [
    "MissingFeatures",
    "ConvBN",
    "MnistNet",
    "ResNetStage",
    "Workload",
    "mnist_workload",
    "resnet_workload",
    "benchmark_variants",
    "get_variant",
    "MNIST_BATCH",
    "RESNET_BATCH",
    "SWEEP_BATCHES",
]

MNIST_BATCH = 256
RESNET_BATCH = 32
SWEEP_BATCHES = (32, 64, 128, 256)
EPS = 1e-3
MOMENTUM = 0.1


class MissingFeatures(Exception):
    """A network needs optional features the variant does not declare."""

    def __init__(self, variant: Variant, needed, what: str):
        self.variant = variant
        self.missing = sorted(set(needed) - variant.supports)
        super().__init__(
            f"{what} needs feature(s) {self.missing} that variant {variant.name!r} "
            f"does not support (supports={sorted(variant.supports)})"
        )


def _require(variant: Variant, needed, what: str) -> None:
    if not set(needed) <= variant.supports:
        raise MissingFeatures(variant, needed, what)


class ConvBN(nn.Module):
    """One conv-BN pair computed by `variant`, with its own parameters and buffers."""

    def __init__(
        self,
        variant: Variant,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        affine: bool = False,
        running_stats: bool = False,
        eps: float = EPS,
        momentum: float = MOMENTUM,
        device=None,
        dtype=None,
    ):
        super().__init__()
        needed = set()
        if stride != 1:
            needed.add("stride")
        if padding != 0:
            needed.add("padding")
        if bias:
            needed.add("bias")
        if affine:
            needed.add("affine")
        if running_stats:
            needed.add("running_stats")
        _require(variant, needed, f"ConvBN({in_channels}, {out_channels}, {kernel_size})")
        factory = {"device": device, "dtype": dtype}
        self.variant = variant
        self.stride, self.padding, self.eps, self.momentum = stride, padding, eps, momentum
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size, **factory)
        )
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d and the tutorial
        if bias:
            bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
            self.bias = nn.Parameter(torch.empty(out_channels, **factory).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        if affine:
            self.bn_weight = nn.Parameter(torch.ones(out_channels, **factory))
            self.bn_bias = nn.Parameter(torch.zeros(out_channels, **factory))
        else:
            self.register_parameter("bn_weight", None)
            self.register_parameter("bn_bias", None)
        if running_stats:
            self.register_buffer("running_mean", torch.zeros(out_channels, **factory))
            self.register_buffer("running_var", torch.ones(out_channels, **factory))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        kwargs = {"training": self.training, "momentum": self.momentum, "eps": self.eps}
        if self.stride != 1:
            kwargs["stride"] = self.stride
        if self.padding != 0:
            kwargs["padding"] = self.padding
        return self.variant(
            x,
            self.weight,
            self.bias,
            self.bn_weight,
            self.bn_bias,
            self.running_mean,
            self.running_var,
            **kwargs,
        )


class MnistNet(nn.Module):
    """The seed tutorial's MNIST `Net`, its conv-BN pairs computed by `variant`."""

    def __init__(self, variant: Variant, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.convbn1 = ConvBN(variant, 1, 32, 3, **factory)
        self.convbn2 = ConvBN(variant, 32, 64, 3, **factory)
        self.fc1 = nn.Linear(9216, 128, **factory)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10, **factory)

    def forward(self, x):
        x = self.convbn1(x)
        F.relu_(x)
        x = self.convbn2(x)
        F.relu_(x)
        x = F.max_pool2d(x, 2)
        F.relu_(x)
        x = x.flatten(1)
        x = self.fc1(x)
        x = self.dropout(x)
        F.relu_(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


RESNET_REQUIRED = frozenset({"stride", "padding"})
RESNET_OPTIONAL = frozenset({"affine", "running_stats"})


class ResNetStage(nn.Module):
    """A basic block and a downsampling block (64 -> 128 channels, stride 2), conv-BN by
    `variant`."""

    def __init__(self, variant: Variant, channels: int = 64, device=None, dtype=None):
        super().__init__()
        _require(variant, RESNET_REQUIRED, "the ResNet-style stage")
        opts = {f: f in variant.supports for f in sorted(RESNET_OPTIONAL)}
        opts.update(device=device, dtype=dtype)
        wide = 2 * channels
        self.features = sorted(
            RESNET_REQUIRED | {f for f in RESNET_OPTIONAL if f in variant.supports}
        )
        self.block1_a = ConvBN(variant, channels, channels, 3, padding=1, **opts)
        self.block1_b = ConvBN(variant, channels, channels, 3, padding=1, **opts)
        self.block2_a = ConvBN(variant, channels, wide, 3, stride=2, padding=1, **opts)
        self.block2_b = ConvBN(variant, wide, wide, 3, padding=1, **opts)
        self.block2_down = ConvBN(variant, channels, wide, 1, stride=2, **opts)

    def forward(self, x):
        out = F.relu_(self.block1_a(x))
        out = self.block1_b(out)
        out += x
        x = F.relu_(out)
        out = F.relu_(self.block2_a(x))
        out = self.block2_b(out)
        out += self.block2_down(x)
        return F.relu_(out)


@dataclass
class Workload:
    """A network, its input and its loss: one training step is `forward()` then backward.

    `forward()` returns the loss, or with `grad` given, the output that backward starts from with
    that gradient (as `out.backward(grad)`)."""

    name: str
    variant: Variant
    model: nn.Module
    inputs: torch.Tensor
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    batch: int
    features: list = field(default_factory=list)
    grad: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def forward(self) -> torch.Tensor:
        """Forward pass and loss (the output backward starts from)."""
        return self.loss_fn(self.model(self.inputs))

    def zero_grad(self) -> None:
        self.model.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One forward+backward step (gradients cleared first). Synchronises on CUDA."""
        self.model.zero_grad(set_to_none=True)
        self.forward().backward(self.grad)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def mnist_workload(
    variant: Variant, batch: int = MNIST_BATCH, device="cpu", seed: int = 0, dtype=torch.float32
) -> Workload:
    """The tutorial's network on a batch of 28x28 single-channel images with class targets."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 28, 28, generator=gen, dtype=dtype).to(device)
    target = torch.randint(0, 10, (batch,), generator=gen).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MnistNet(variant, device=device, dtype=dtype).train()
    return Workload(
        "mnist_net", variant, model, x, lambda out: F.nll_loss(out, target), batch, features=[]
    )


def resnet_workload(
    variant: Variant,
    batch: int = RESNET_BATCH,
    device="cpu",
    seed: int = 0,
    channels: int = 64,
    size: int = 28,
    dtype=torch.float32,
) -> Workload:
    """The ResNet-style stage on a (batch, 64, 28, 28) activation. Backward starts from the
    stage's output with a fixed random gradient (dense, as from a real loss) instead of through a
    loss function, so nothing but the stage saves tensors for backward."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen, dtype=dtype).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNetStage(variant, channels, device=device, dtype=dtype).train()
    out_size = (size + 2 - 3) // 2 + 1
    probe = torch.randn(batch, 2 * channels, out_size, out_size, generator=gen, dtype=dtype).to(
        device
    )
    return Workload(
        "resnet_stage",
        variant,
        model,
        x,
        lambda out: out,
        batch,
        features=model.features,
        grad=probe,
    )


# --------------------------------------------------------------------------------------------
# Variants to benchmark


BASELINE_NAMES = ("eager", "checkpoint")


def benchmark_variants(specs=None) -> tuple:
    """The variants the benchmarks run: the built-in ones (`fused.registry.BUILTIN_VARIANTS`), or
    with `specs` (the ``--variant`` SPECs of `pytest verify`) the variants they name, plus the
    eager and checkpoint baselines when not already there; each name once."""
    from fused.registry import BUILTIN_VARIANTS, builtin_variant

    if specs:
        from verify.specs import select

        variants = list(select(list(specs)))
    else:
        variants = list(BUILTIN_VARIANTS)
    names = {v.name for v in variants}
    variants += [builtin_variant(name) for name in BASELINE_NAMES if name not in names]
    return tuple(variants)


def get_variant(name: str) -> Optional[Variant]:
    """The benchmark variant called `name`, or None."""
    for v in benchmark_variants():
        if v.name == name:
            return v
    return None
