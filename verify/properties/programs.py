"""The kernel inside the programs that call it, not as one isolated call (`Case.program`):

  relu_inplace  `ReLU(inplace=True)` on the output before backward (torchvision's ResNet)
  add_inplace   `out += identity`, the residual connection, before backward
  mul_inplace   `out.mul_(0.5)` before backward
  retain_graph  two backward passes through one graph: `torch.autograd.grad(..., retain_graph=True)`
                with one grad_out, then `out.backward` with another
  accumulate    two training steps of one layer: gradients accumulate into the same parameters
                and the running statistics carry over
  repeated      one layer called again and again: two forwards, then both backwards (interleaved,
                as a layer used twice in one network), then an optimizer step that changes the
                parameters in place and a third call; drawn under every grad mode

Every result is checked against the oracle composed with what the program does: the gradients of
ReLU(conv_bn) are the oracle's for grad_out times the ReLU's mask, `.grad` after two steps is the
sum of both steps' oracle gradients, and every output and gradient is read after the last call, so
a later call that overwrites an earlier one's buffers, or a saved state kept outside the autograd
graph, shows. A kernel that needs its own output in backward declares `inplace_output` in
`Variant.limitations`; then the in-place programs require backward to raise autograd's in-place
error instead of returning numbers (and correct numbers still pass)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import strategies as st

from verify import error_bounds, oracle, runner
from verify.case import GRAD_MODES, PROGRAMS
from verify.dtypes import largest_finite
from verify.oracle import Results
from verify.properties.checks import assert_close, fail
from verify.strategies.configs import calling_contexts, cases

NAME = "programs"
APPLIES_TO = "every variant"
# What a program does around a call does not depend on the size: block-sized cases are enough.
SIZE_TIERS = ("small", "tile")
# Six programs, one of them under three grad modes: twice the profile's examples, so that the
# derandomised `ci` draws reach each program several times (each example costs a few ms).
EXAMPLE_SHARE = 2.0
# The words of autograd's error for a saved tensor that was modified in place.
INPLACE_ERROR = "modified by an inplace operation"
# A power of two: the scaled grad_out autograd hands the kernel is exact in every dtype.
SCALE = 0.5
PARAMETERS = ("weight", "bias", "bn_weight", "bn_bias")
STATS = ("running_mean", "running_var")
MODES = {
    "enabled": torch.enable_grad,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


@st.composite
def _program_case(draw, variant, tier):
    program = draw(st.sampled_from(PROGRAMS))
    case = draw(calling_contexts(draw(cases(variant.supports, variant.form, tier=tier))))
    mode = draw(st.sampled_from(GRAD_MODES)) if program == "repeated" else "enabled"
    return case.replace(program=program, grad_mode=mode)


def strategy(variant, tier: str = "small"):
    return _program_case(variant, tier)


def check(variant, case) -> float:
    return _PROGRAMS[case.program](variant, case)


# -- comparing -------------------------------------------------------------------------------------
def _expected(case, arrays) -> tuple[Results, Results]:
    exact = oracle.expected(case, arrays, gradients=case.grad_mode == "enabled")
    return exact, error_bounds.bounds(case, arrays, exact, gradients=case.grad_mode == "enabled")


def _numpy(tensors: dict) -> dict:
    return {name: runner.to_numpy(t) for name, t in tensors.items()}


def _close(variant, case, actual: dict, exact: Results, bounds: Results, context: str) -> float:
    __tracebackhide__ = True
    names = [n for n, v in actual.items() if v is not None]
    return assert_close(
        variant, NAME, case, Results(**actual), exact, bounds, names, context=context
    )


# -- the in-place programs -------------------------------------------------------------------------
def _relu(out, seen, grad_out):
    out.relu_()
    return "ReLU(inplace=True)", grad_out * (seen > 0)


def _add(out, seen, grad_out):
    # The residual is any tensor of the output's shape; the output's own values are at hand.
    out.add_(out.detach().flip(0))
    return "`out += identity`", grad_out


def _mul(out, seen, grad_out):
    out.mul_(SCALE)
    return f"`out.mul_({SCALE})`", grad_out * SCALE


def _in_place(modify):
    def check_in_place(variant, case) -> float:
        __tracebackhide__ = True
        arrays = case.arrays()
        tensors = runner.make_inputs(case, arrays, requires_grad=True)
        out = runner.forward(variant, case, tensors, graph=True)
        seen = runner.to_numpy(out)
        limited = "inplace_output" in variant.limitations
        try:
            what, grad_out = modify(out, seen, arrays["grad_out"])
        except RuntimeError as error:
            # autograd refuses the in-place op itself (the output is a view): as clean as a
            # backward that raises, for a kernel that declared it.
            if limited:
                return 0.0
            raise runner.KernelRaised("an in-place op on the output", error) from error
        try:
            runner.backward(out, tensors["grad_out"])
        except runner.KernelRaised as raised:
            if INPLACE_ERROR not in str(raised.error):
                raise
            if limited:
                return 0.0  # the declared limitation, met as declared
            fail(
                variant,
                NAME,
                case,
                [
                    f"backward after {what} on the output raised autograd's in-place error: "
                    f"{raised.error}",
                    "the kernel needs its own output in backward; programs that modify a layer's "
                    "output in place (ReLU(inplace=True), residual additions) cannot use it: "
                    "declare limitations={'inplace_output'} in its Variant if that is intended",
                ],
            )
        exact, bounds = _expected(case, dict(arrays, grad_out=grad_out))
        actual = dict(
            out=seen, **runner.accumulated_gradients(tensors), **runner.running_stats(tensors)
        )
        return _close(
            variant, case, actual, exact, bounds, f"after {what} on the output and backward"
        )

    return check_in_place


# -- several backward passes -----------------------------------------------------------------------
def _retain_graph(variant, case) -> float:
    __tracebackhide__ = True
    arrays = case.arrays()
    second = case.arrays(1)["grad_out"]
    tensors = runner.make_inputs(case, arrays, requires_grad=True)
    out = runner.forward(variant, case, tensors, graph=True)
    first = runner.gradients_of(out, tensors, tensors["grad_out"], retain_graph=True)
    runner.backward(out, runner.to_torch(second, case, layout=case.grad_layout))
    exact, bounds = _expected(case, arrays)
    worst = _close(
        variant,
        case,
        dict(out=runner.to_numpy(out), **_numpy(first)),
        exact,
        bounds,
        "first backward pass: torch.autograd.grad(out, ..., retain_graph=True)",
    )
    exact, bounds = _expected(case, dict(arrays, grad_out=second))
    actual = dict(**runner.accumulated_gradients(tensors), **runner.running_stats(tensors))
    return max(
        worst,
        _close(
            variant,
            case,
            actual,
            exact,
            bounds,
            "second backward pass through the same graph: out.backward(another grad_out)",
        ),
    )


# -- one layer, several steps ----------------------------------------------------------------------
class _Layer:
    """One layer's parameters and running statistics, called step after step with fresh inputs;
    the oracle's expectations of each step, the running statistics chained from step to step."""

    def __init__(self, case):
        self.case = case
        self.arrays = case.arrays(0)
        self.tensors = runner.make_inputs(case, self.arrays, requires_grad=True)
        self.stats_bounds: dict = {n: 0.0 for n in STATS}
        self.steps = 0

    def inputs(self) -> dict:
        """The tensors of the next step: a fresh input and grad_out, this layer's parameters and
        running statistics."""
        if self.steps == 0:
            return self.tensors
        fresh = runner.make_inputs(self.case, self.arrays, requires_grad=True)
        return dict(fresh, **{n: self.tensors[n] for n in PARAMETERS + STATS})

    def expect(self) -> tuple[Results, Results]:
        """The oracle's results of the step whose inputs `inputs` gave, and their bounds, the
        running statistics' bound grown by the earlier steps' (decayed by momentum); then moves on
        to the next step's arrays (same parameters)."""
        exact, bounds = _expected(self.case, self.arrays)
        if self.case.training:
            for name in STATS:
                if getattr(bounds, name) is not None:
                    grown = (1 - self.case.momentum) * self.stats_bounds[name]
                    setattr(bounds, name, grown + getattr(bounds, name))
                    self.stats_bounds[name] = getattr(bounds, name)
        self.steps += 1
        self.arrays = dict(
            self.case.arrays(self.steps),
            **{n: self.arrays[n] for n in PARAMETERS},
            **{n: getattr(exact, n) for n in STATS},
        )
        return exact, bounds

    def chainable(self) -> bool:
        """False once the exact running statistics overflow the dtype: the kernel then holds inf,
        legitimately, and the next step's oracle would start from a number no kernel has."""
        largest = largest_finite(self.case.dtype)
        return all(
            self.arrays[n] is None or bool(np.all(np.abs(self.arrays[n]) <= largest)) for n in STATS
        )

    def optimizer_step(self) -> None:
        """New parameter values written into the same tensors, as `optimizer.step()` does."""
        new = self.case.arrays(self.steps)
        fresh = runner.make_inputs(self.case, new, requires_grad=False)
        with torch.no_grad():
            for name in PARAMETERS:
                if self.tensors[name] is not None:
                    self.tensors[name].copy_(fresh[name])
        self.arrays.update({n: new[n] for n in PARAMETERS})


def _accumulate(variant, case) -> float:
    __tracebackhide__ = True
    layer = _Layer(case)
    steps = []
    for _ in range(2):
        tensors = layer.inputs()
        out = runner.forward(variant, case, tensors, graph=True)
        runner.backward(out, tensors["grad_out"])
        steps.append((tensors, out, *layer.expect()))
        if not layer.chainable():
            break
    worst = 0.0
    for i, (tensors, out, exact, bounds) in enumerate(steps):
        actual = dict(out=runner.to_numpy(out))
        if "x" in case.requires_grad:
            actual["grad_x"] = runner.accumulated_gradients(tensors)["grad_x"]
        context = f"step {i + 1} of {len(steps)}: its output and input gradient"
        worst = max(worst, _close(variant, case, actual, exact, bounds, context))
    tensors = steps[-1][0]
    grads = {n: g for n, g in runner.accumulated_gradients(tensors).items() if n != "grad_x"}
    exact = Results(**{n: sum(getattr(s[2], n) for s in steps) for n in grads})
    bounds = Results(**{n: sum(getattr(s[3], n) for s in steps) for n in grads})
    for name in STATS:
        setattr(exact, name, getattr(steps[-1][2], name))
        setattr(bounds, name, getattr(steps[-1][3], name))
    actual = dict(grads, **runner.running_stats(tensors))
    context = (
        f"after {len(steps)} training steps into the same parameters: .grad must be the sum of "
        "the steps' gradients"
    )
    return max(worst, _close(variant, case, actual, exact, bounds, context))


@dataclass
class _Call:
    """One call of a layer called again and again, read only after the last call."""

    tensors: dict
    out: torch.Tensor
    exact: Results
    bounds: Results
    grads: dict = field(default_factory=dict)

    def backward(self) -> None:
        self.grads = runner.gradients_of(self.out, self.tensors, self.tensors["grad_out"])


def _repeated(variant, case) -> float:
    __tracebackhide__ = True
    layer = _Layer(case)
    graph = case.grad_mode == "enabled"
    calls: list[_Call] = []

    def call() -> None:
        tensors = layer.inputs()
        with MODES[case.grad_mode]():
            out = runner.forward(variant, case, tensors, graph=graph)
        calls.append(_Call(tensors, out, *layer.expect()))

    call()
    if layer.chainable():
        call()
    # Both backwards after both forwards: a layer used twice in one network.
    for earlier in calls if graph else ():
        earlier.backward()
    if layer.chainable():
        layer.optimizer_step()
        call()
        if graph:
            calls[-1].backward()
    worst = 0.0
    for i, done in enumerate(calls):
        actual = dict(out=runner.to_numpy(done.out), **_numpy(done.grads))
        if i == len(calls) - 1:
            actual.update(runner.running_stats(done.tensors))
        what = "after an optimizer step changed the parameters in place, " if i == 2 else ""
        context = (
            f"call {i + 1} of {len(calls)} of one layer, {what}its results read after the last "
            f"call (grad mode {case.grad_mode})"
        )
        worst = max(worst, _close(variant, case, actual, done.exact, done.bounds, context))
    return worst


_PROGRAMS = {
    "relu_inplace": _in_place(_relu),
    "add_inplace": _in_place(_add),
    "mul_inplace": _in_place(_mul),
    "retain_graph": _retain_graph,
    "accumulate": _accumulate,
    "repeated": _repeated,
}
assert set(_PROGRAMS) == set(PROGRAMS), "every program of verify.case.PROGRAMS has a check"
