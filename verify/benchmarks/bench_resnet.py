"""A ResNet-style stage (64 channels, 28x28, batch 32; padding 1 and a stride-2 downsample), fwd+bwd.

Needs the "stride" and "padding" features: variants without them are skipped with the reason.
"""
from verify.benchmarks.harness import build_baseline, build_or_skip, run_benchmark
from verify.benchmarks.models import RESNET_BATCH, resnet_workload


def test_resnet_stage(benchmark, bench_device, bench_variant):
    workload = build_or_skip(resnet_workload, bench_variant, bench_device, batch=RESNET_BATCH)
    run_benchmark(benchmark, workload, group=f"resnet_stage batch={RESNET_BATCH}",
                  baseline=lambda: build_baseline(resnet_workload, bench_variant, bench_device,
                                                  batch=RESNET_BATCH))
