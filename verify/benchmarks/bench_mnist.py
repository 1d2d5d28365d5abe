"""The seed tutorial's MNIST network, fwd+bwd, at batch 32..256 (256 is the tutorial comparison),
and at batch 256 its compile peers: the network under torch.compile at the partitioner's default
and at an activation memory budget of 0.5 (only when benchmarks measure; see
`harness.compiled_or_skip`).

Grouped per batch size, so every variant (fused, eager, checkpoint, compiled) sits side by side;
across groups the saved_bytes figure shows how saved memory grows with the batch. Each variant's
rounds are paired with eager steps (`run_benchmark`), which the regression gate compares on.
"""

import pytest

from verify.benchmarks.compiled import BUDGETS, budget_id
from verify.benchmarks.harness import bench_network
from verify.benchmarks.models import MNIST_BATCH, SWEEP_BATCHES, mnist_workload


@pytest.mark.parametrize("batch", SWEEP_BATCHES, ids=lambda b: f"b{b}")
def test_mnist_net(benchmark, bench_device, bench_variant, batch):
    bench_network(benchmark, mnist_workload, bench_variant, bench_device, batch)


@pytest.mark.parametrize("budget", BUDGETS, ids=budget_id)
def test_mnist_net_compiled(benchmark, bench_device, bench_variant, budget):
    bench_network(benchmark, mnist_workload, bench_variant, bench_device, MNIST_BATCH, budget)
