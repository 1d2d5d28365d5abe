"""Quick speed / saved-memory comparison of the fused conv-BN against eager Conv2d+BatchNorm2d on
the tutorial's MNIST network (two conv-BN pairs 1->32->64, 3x3, batch 256, 28x28, CPU).

    .venv/bin/python tests/fused/helpers/mnist_speed.py [--threads 2] [--reps 15]

Not a test (the project's official benchmark lives in verify/benchmarks); prints median times of
forward+backward and the bytes saved for backward (deduplicated by storage), fused / eager.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from fused.functional import fused_conv_bn
from fused.tutorial import FusedConvBN2DFunction


class Pair(nn.Module):
    """Conv2d(bias=False) + BatchNorm2d, computed eagerly or by one of the fused kernels."""

    def __init__(self, cin, cout, mode, affine, track):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(cin, cout, 3, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, affine=affine, track_running_stats=track)

    def forward(self, x):
        if self.mode == "eager":
            return self.bn(self.conv(x))
        if self.mode == "tutorial_fn":
            return FusedConvBN2DFunction.apply(x, self.conv.weight, 1e-3)
        bn = self.bn
        return fused_conv_bn(x, self.conv.weight, None, bn.weight, bn.bias, bn.running_mean,
                             bn.running_var, training=True, momentum=bn.momentum, eps=bn.eps,
                             form=self.mode, num_batches_tracked=bn.num_batches_tracked)


class Net(nn.Module):
    def __init__(self, mode, affine=True, track=True):
        super().__init__()
        self.p1 = Pair(1, 32, mode, affine, track)
        self.p2 = Pair(32, 64, mode, affine, track)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu_(self.p1(x))
        x = F.relu_(self.p2(x))
        x = F.max_pool2d(x, 2)
        x = F.relu_(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def step(model, x, target):
    model.zero_grad(set_to_none=True)
    F.nll_loss(model(x), target).backward()


def saved_bytes(model, x, target):
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.nll_loss(model(x), target)
    del loss
    return sum(seen.values())


def timeit(model, x, target, reps):
    for _ in range(3):
        step(model, x, target)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(model, x, target)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28)
    target = torch.randint(0, 10, (args.batch,))
    for affine, track, modes in [(True, True, ("standard", "tutorial")),
                                 (False, False, ("standard", "tutorial", "tutorial_fn"))]:
        eager = Net("eager", affine, track)
        e_bytes = saved_bytes(eager, x, target)
        # Interleave rounds so that drift in machine load hits every variant alike.
        results = {m: [] for m in ("eager",) + modes}
        nets = {"eager": eager, **{m: Net(m, affine, track) for m in modes}}
        for _ in range(3):
            for m, net in nets.items():
                results[m].append(timeit(net, x, target, args.reps // 3 + 1))
        e_time = min(results["eager"])
        print(f"affine={affine} track_running_stats={track}: eager {e_time * 1e3:.1f} ms, "
              f"saved {e_bytes / 2**20:.1f} MiB")
        for m in modes:
            t = min(results[m])
            b = saved_bytes(nets[m], x, target)
            print(f"  {m:12s} {t * 1e3:7.1f} ms  time ratio {t / e_time:.3f}   "
                  f"saved {b / 2**20:.1f} MiB  bytes ratio {b / e_bytes:.3f}")


if __name__ == "__main__":
    main()
