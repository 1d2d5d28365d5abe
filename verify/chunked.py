"""The oracle and its error bounds for a training forward too large for NumPy: past 2^31 elements
(where a kernel's int32 indices overflow), in float64, on the tensors' own device (a GPU), a few
rows of one sample at a time (a whole sample where the convolution is not pointwise), so no
float64 copy of a whole tensor is ever held.

The same maths as `reference.batch_norm_statistics` (two passes: mean, then squared deviations)
and the same first-order model as `verify.error_bounds.bounds` for the output and running
statistics, evaluated from per-channel sums accumulated chunk by chunk (four passes over the
batch). tests/meta/test_chunked.py checks both against the oracle and `error_bounds.bounds` on small
cases, on CPU, so the two stay one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from verify import error_bounds
from verify.case import Case
from verify.dtypes import underflow_unit, unit_roundoff

# Distinct values per channel gathered across chunks, beyond which a channel counts its repeats
# chunk by chunk (below the global count only for data with more distinct values than this,
# where repeats are the bias-only positions each chunk holds as well).
DISTINCT_CAP = 2**24


class _Repeats:
    """`error_bounds.repeats` over chunks of the conv output: exact while each channel's distinct
    values fit DISTINCT_CAP, otherwise the sum of each chunk's own repeats."""

    def __init__(self, channels: int):
        self.seen: list = [[] for _ in range(channels)]
        self.held = [0] * channels
        self.within = [0] * channels

    def add(self, y) -> None:
        for c in range(y.shape[1]):
            distinct = torch.unique(y[:, c])
            self.within[c] += y[:, c].numel() - distinct.numel()
            if self.seen[c] is not None:
                self.seen[c].append(distinct)
                self.held[c] += distinct.numel()
                if self.held[c] > DISTINCT_CAP:
                    self.seen[c] = None

    def per_channel(self, values: int, device) -> torch.Tensor:
        """Repeats per channel of `values` values each."""
        counts = [
            self.within[c] if seen is None else values - torch.unique(torch.cat(seen)).numel()
            for c, seen in enumerate(self.seen)
        ]
        return torch.tensor(counts, dtype=torch.float64, device=device)


@dataclass
class Worst:
    """The largest |actual - exact| / bound of a comparison, and where."""

    ratio: float = 0.0
    name: str = ""
    index: tuple = ()
    expected: float = 0.0
    actual: float = 0.0
    bound: float = 0.0

    def update(self, name, actual, exact, bound, offset: tuple = ()) -> None:
        diff = (actual.double() - exact).abs()
        ratio = torch.where(bound > 0, diff / bound, torch.where(diff > 0, math.inf, 0.0))
        # A NaN the oracle does not have (unwritten memory) is as wrong as an error can be.
        ratio = torch.where(torch.isnan(actual) & ~torch.isnan(exact), math.inf, ratio)
        flat = int(torch.argmax(ratio))
        worst = float(ratio.flatten()[flat])
        if worst > self.ratio or not self.name:
            index = torch.unravel_index(torch.tensor(flat), ratio.shape)
            offset = offset or (0,) * len(index)
            self.ratio, self.name = worst, name
            self.index = tuple(int(i) + o for i, o in zip(index, offset, strict=True))
            self.expected = float(exact.flatten()[flat])
            self.actual = float(actual.flatten()[flat])
            self.bound = float(bound.flatten()[flat])

    def describe(self) -> str:
        return (
            f"{self.name}: worst element {self.index}: expected {self.expected!r}, actual "
            f"{self.actual!r}, bound {self.bound:.3e} ({self.ratio:.3g}x the bound)"
        )


def _c(v):
    return v[None, :, None, None]


def compare_training_forward(case: Case, tensors: dict, out, running: dict, *, rows: int) -> Worst:
    """The worst error / bound of a training forward's `out` (and of the updated running
    statistics in `running`, name -> tensor, when the case has them) against the float64 oracle,
    evaluated `rows` output rows of one sample at a time. `tensors` holds the call's inputs, the
    running statistics as they were before the call."""
    assert case.training, "the chunked oracle covers training forwards"
    u, eta = unit_roundoff(case.dtype), underflow_unit(case.dtype)
    x, weight, bias = tensors["x"], tensors["weight"].double(), tensors["bias"]
    bias = None if bias is None else bias.double()
    conv = case.conv_options()
    root_k = math.sqrt(case.conv_reduction)
    r = case.values_per_channel
    root_r = math.sqrt(r)

    pointwise = case.kernel == case.stride == (1, 1) and case.padding == (0, 0)
    step = rows if pointwise else case.output_hw[0]

    def conv_chunks():
        for n in range(case.batch):
            for h in range(0, case.output_hw[0], step):
                part = x[n : n + 1, :, h : h + step] if pointwise else x[n : n + 1]
                part = part.double()
                y = F.conv2d(part, weight, bias, **conv)
                magnitude = F.conv2d(
                    part.abs(), weight.abs(), None if bias is None else bias.abs(), **conv
                )
                e_y = u * (root_k * magnitude + y.abs()) + eta * (root_k + 1)
                yield (n, 0, h, 0), y, e_y

    dims = (0, 2, 3)

    def zeros():
        return torch.zeros(case.out_channels, dtype=torch.float64, device=x.device)

    sum_y, sum_e_y = zeros(), zeros()
    repeats = _Repeats(case.out_channels)
    for _, y, e_y in conv_chunks():
        sum_y = sum_y + y.sum(dim=dims)
        sum_e_y = sum_e_y + e_y.sum(dim=dims)
        repeats.add(y)
    mean = sum_y / r
    sum_sq, sum_abs = zeros(), zeros()
    for _, y, _ in conv_chunks():
        centred = y - _c(mean)
        sum_sq = sum_sq + (centred * centred).sum(dim=dims)
        sum_abs = sum_abs + centred.abs().sum(dim=dims)
    var = sum_sq / (r - 1)
    denom = var.sqrt() + case.eps if case.form == "tutorial" else (sum_sq / r + case.eps).sqrt()
    e_mean = sum_e_y / r + u * (root_r * sum_abs / r + error_bounds.SHARED_SUM * r * mean.abs())

    def e_d_of(y, e_y):
        centred = y - _c(mean)
        return centred, e_y + _c(e_mean) + u * centred.abs()

    sum_var_err = zeros()
    for _, y, e_y in conv_chunks():
        centred, e_d = e_d_of(y, e_y)
        sum_var_err = sum_var_err + (2 * centred.abs() * e_d + e_d * e_d).sum(dim=dims)
    u_sum = error_bounds.sum_roundoff(case.dtype)
    e_var = sum_var_err / r * r / max(r - 1, 1) + var * (
        u * root_r + error_bounds.SHARED_SUM * u_sum * repeats.per_channel(r, x.device)
    )
    if case.form == "tutorial":
        std = var.sqrt()
        by_std = torch.where(std > 0, e_var / (2 * std), torch.full_like(std, math.inf))
        e_denom = torch.minimum(by_std, e_var.sqrt())
    else:
        e_denom = e_var / (2 * denom)
    rel_denom = e_denom / denom + 2 * u

    bn_weight, bn_bias = tensors["bn_weight"], tensors["bn_bias"]
    gamma = torch.ones_like(mean) if bn_weight is None else bn_weight.double()
    beta = torch.zeros_like(mean) if bn_bias is None else bn_bias.double()
    worst = Worst()
    for offset, y, e_y in conv_chunks():
        n, _, h, _ = offset
        centred, e_d = e_d_of(y, e_y)
        xhat = centred / _c(denom)
        e_xhat = e_d / _c(denom) + xhat.abs() * _c(rel_denom)
        exact = _c(gamma) * xhat + _c(beta)
        bound = _c(gamma.abs()) * e_xhat + 2 * u * (exact.abs() + _c(beta.abs())) + 2 * eta
        actual = out[n : n + 1, :, h : h + y.shape[2]]
        worst.update("out", actual, exact, error_bounds.SAFETY * bound, offset)
    if running:
        m = case.momentum
        u_s, eta_s = unit_roundoff(case.stats_dtype), underflow_unit(case.stats_dtype)
        old_mean, old_var = tensors["running_mean"].double(), tensors["running_var"].double()
        exact_stats = {
            "running_mean": (1 - m) * old_mean + m * mean,
            "running_var": (1 - m) * old_var + m * var,
        }
        bounds = {
            "running_mean": m * e_mean + 2 * u_s * (old_mean.abs() + m * mean.abs()) + 2 * eta_s,
            "running_var": m * e_var + 2 * u_s * (old_var + m * var) + 2 * eta_s,
        }
        for name, actual in running.items():
            worst.update(name, actual, exact_stats[name], error_bounds.SAFETY * bounds[name])
    return worst
