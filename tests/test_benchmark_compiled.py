"""The compile peers of the benchmarks and the headline's checks: saved bytes are really measured
under torch.compile, each budget gets its own graph, the pytest-benchmark path skips cleanly, and
the headline's targets and noise allowance judge what they say."""

from __future__ import annotations

import pytest
import torch

from fused.registry import builtin_variant
from verify.benchmarks import headline
from verify.benchmarks.compiled import compiled_workload, per_channel_allowance
from verify.benchmarks.harness import compiled_or_skip
from verify.benchmarks.models import resnet_workload
from verify.benchmarks.recompute import conv_recompute
from verify.memory import saved_tensors

F32 = 4


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _tiny(name="eager"):
    return resnet_workload(builtin_variant(name), batch=2, channels=4, size=6)


def test_saved_tensors_hooks_see_what_a_compiled_graph_saves():
    x = torch.randn(1000, requires_grad=True)

    def body():
        return (x * 2).sin().cos()

    eager = saved_tensors(body).total_bytes
    compiled_fn = torch.compile(body, fullgraph=True, backend="aot_eager")
    compiled_fn()  # compile outside the measurement
    compiled = saved_tensors(compiled_fn).total_bytes
    assert eager == 2 * 1000 * F32  # sin and cos each save their input
    # The partitioner keeps one 1000-float tensor and recomputes the rest; a hook that did not
    # see the compiled graph's saves would report 0.
    assert compiled == 1000 * F32


def test_each_budget_compiles_its_own_graph():
    # Same class, same variant: dynamo would reuse the first network's graph for the second if
    # the budget were only patched around its first call (measured: identical saved bytes).
    default, _ = compiled_workload(_tiny(), None)
    tight, seconds = compiled_workload(_tiny(), 0.0)
    params = list(default.model.parameters())
    full = saved_tensors(default.forward, params=params).activation_bytes
    params = list(tight.model.parameters())
    low = saved_tensors(tight.forward, params=params).activation_bytes
    assert seconds > 0
    assert low < full, (low, full)


def test_compiled_fused_network_saves_no_more_than_compiled_eager():
    # Up to a few per-channel vectors: the tutorial form's denominator (a zero-variance mask, a
    # reciprocal) keeps C-sized tensors that BatchNorm's rsqrt does not.
    eager, _ = compiled_workload(_tiny("eager"), None)
    tutorial = _tiny("fused_tutorial")
    slack = per_channel_allowance(tutorial)
    fused, _ = compiled_workload(tutorial, None)
    extra = saved_tensors(fused.forward).total_bytes - saved_tensors(eager.forward).total_bytes
    assert extra <= slack, (extra, slack)


class _Bench:
    def __init__(self, disabled):
        self.disabled, self.extra_info = disabled, {}


def test_compile_peers_skip_when_benchmarks_do_not_measure():
    with pytest.raises(pytest.skip.Exception, match="only when benchmarks measure"):
        compiled_or_skip(_Bench(disabled=True), _tiny(), None)


def test_compile_peers_skip_variants_without_the_feature():
    with pytest.raises(pytest.skip.Exception, match="does not declare the 'compile' feature"):
        compiled_or_skip(_Bench(disabled=False), _tiny("checkpoint"), None)


def test_recompute_runs_one_conv_per_pair(monkeypatch):
    from verify.benchmarks import recompute

    calls = []
    workload = _tiny("fused_standard")
    run = conv_recompute(workload)
    monkeypatch.setattr(recompute, "conv_forward", lambda *args: calls.append(args))
    run()
    assert len(calls) == 5  # the stage's five conv-BN pairs
    assert {tuple(c[0].shape) for c in calls} >= {(2, 4, 6, 6)}


def _peer(label, times, saved=100):
    return headline.Peer(
        label, lambda: None, {"saved_bytes": saved, "peak_bytes": saved}, times=list(times)
    )


def test_noise_allowance_grows_with_the_same_configuration_spread():
    base = [1.0] * 9
    calm = {
        headline.compiled_label("eager", None): _peer("a", base),
        headline.TWIN: _peer("b", [1.0, 1.01, 0.99] * 3),
    }
    rough = {
        headline.compiled_label("eager", None): _peer("a", base),
        headline.TWIN: _peer("b", [1.0, 1.3, 0.8] * 3),
    }
    assert 0 < headline.noise_allowance(calm) < headline.noise_allowance(rough)


def test_compiled_fused_targets_catch_a_hungrier_or_slower_peer():
    eager_c = headline.compiled_label("eager", None)
    fused_c = headline.compiled_label("fused_standard", None)
    steady = [1.0, 1.01, 0.99, 1.0, 1.0]
    results = {
        eager_c: _peer(eager_c, steady),
        headline.TWIN: _peer("t", steady),
        fused_c: _peer(fused_c, [1.5] * 5, saved=101),
        None: [],
    }
    results[fused_c].figures["per_channel_allowance"] = 0
    verdicts = dict((msg, ok) for ok, msg in headline.check_targets("tiny", results))
    failed = [msg for msg, ok in verdicts.items() if not ok]
    assert any("saved bytes 1.010x compiled eager's, +1 bytes" in m for m in failed), verdicts
    assert any("fwd+bwd time 1.500x compiled eager" in m for m in failed), verdicts
