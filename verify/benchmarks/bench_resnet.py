"""A ResNet-style stage (64 channels, 28x28, batch 32; padding 1 and a stride-2 downsample),
fwd+bwd, and its compile peers (torch.compile at the default and at an activation memory budget
of 0.5; only when benchmarks measure, see `harness.compiled_or_skip`).

Needs the "stride" and "padding" features: variants without them are skipped with the reason.
"""

import pytest

from verify.benchmarks.compiled import BUDGETS, budget_id
from verify.benchmarks.harness import bench_network
from verify.benchmarks.models import RESNET_BATCH, resnet_workload


def test_resnet_stage(benchmark, bench_device, bench_variant):
    bench_network(benchmark, resnet_workload, bench_variant, bench_device, RESNET_BATCH)


@pytest.mark.parametrize("budget", BUDGETS, ids=budget_id)
def test_resnet_stage_compiled(benchmark, bench_device, bench_variant, budget):
    bench_network(benchmark, resnet_workload, bench_variant, bench_device, RESNET_BATCH, budget)
