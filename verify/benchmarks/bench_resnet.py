"""A ResNet-style stage (64 channels, 28x28, batch 32; padding 1 and a stride-2 downsample),
fwd+bwd, and its compile peers (torch.compile at the default and at an activation memory budget
of 0.5; only when benchmarks measure, see `harness.compiled_or_skip`).

Needs the "stride" and "padding" features: variants without them are skipped with the reason.
"""

import pytest

from verify.benchmarks.compiled import BUDGETS, budget_label
from verify.benchmarks.harness import build_baseline, build_or_skip, compiled_or_skip, run_benchmark
from verify.benchmarks.models import RESNET_BATCH, resnet_workload


def test_resnet_stage(benchmark, bench_device, bench_variant):
    workload = build_or_skip(resnet_workload, bench_variant, bench_device, batch=RESNET_BATCH)
    run_benchmark(
        benchmark,
        workload,
        group=f"resnet_stage batch={RESNET_BATCH}",
        baseline=lambda: build_baseline(
            resnet_workload, bench_variant, bench_device, batch=RESNET_BATCH
        ),
    )


@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: budget_label(b).replace(" ", "_"))
def test_resnet_stage_compiled(benchmark, bench_device, bench_variant, budget):
    workload = build_or_skip(resnet_workload, bench_variant, bench_device, batch=RESNET_BATCH)
    workload = compiled_or_skip(benchmark, workload, budget)
    run_benchmark(
        benchmark,
        workload,
        group=f"resnet_stage batch={RESNET_BATCH}",
        baseline=lambda: build_baseline(
            resnet_workload, bench_variant, bench_device, batch=RESNET_BATCH
        ),
    )
