"""pytest plugin of the benchmarks (loaded by the root conftest).

* Default runs execute benchmarks once, as plain tests. Unless the command line asks for
  measurements (``--benchmark-only``, ``--benchmark-enable``, ``--benchmark-json``,
  ``--benchmark-save``, ``--benchmark-autosave``, ``--benchmark-compare[-fail]``,
  ``--benchmark-histogram`` or ``--benchmark-cprofile``), this plugin turns on pytest-benchmark's
  ``--benchmark-disable`` mode: every benchmarked function runs exactly once and no statistics are
  gathered, so ``pytest verify`` stays fast yet the benchmarks (and their memory figures) cannot
  rot. It applies to every ``benchmark`` test, including ``bench_oracle.py``.
* Benchmarks take the ``bench_variant`` argument: the built-in variants, or those of
  ``--variant SPEC`` (the suite's option), plus the eager and checkpoint baselines.
* ``--bench-device auto|cpu|cuda`` (default auto: CUDA when available) is what the
  ``bench_device`` fixture returns.
* ``--bench-threads N`` (default 1): ``torch.set_num_threads(N)`` around every test that uses the
  ``benchmark`` fixture, restored afterwards. A fixed count makes runs comparable across machines
  with different core counts. 1, because the reference machine has 2 cores shared with other
  jobs: there a 2-thread step stalls whenever one of its threads is preempted, the per-round
  time ratios the regression gate compares spread about twice as wide as with 1 thread, and a
  run takes twice as long (docs/benchmarks.md). Pass ``--bench-threads 2`` on a dedicated
  machine to measure parallel kernels.
* After pytest-benchmark's time tables, a memory table per group (`verify.benchmarks.summary`):
  saved and peak bytes, their ratio to eager, and the paired time ratio to eager.
* Saved runs (``--benchmark-save``/``--benchmark-autosave``) keep per-round data, as if
  ``--benchmark-save-data`` were given: the regression gate's rank test needs it.
* Machine info of saved/JSON runs gains a ``torch`` entry: version, thread count, device and
  device name, CUDA/cuDNN versions.
"""

from __future__ import annotations

import platform

import pytest

# Options of pytest-benchmark that mean "measure": any of them keeps benchmarks enabled.
_MEASURING_OPTIONS = (
    "benchmark_only",
    "benchmark_enable",
    "benchmark_json",
    "benchmark_save",
    "benchmark_autosave",
    "benchmark_compare",
    "benchmark_compare_fail",
    "benchmark_histogram",
    "benchmark_cprofile",
)

DEFAULT_THREADS = 1


def pytest_addoption(parser):
    group = parser.getgroup("convbn-benchmarks", "convbn-verify benchmarks")
    group.addoption(
        "--bench-device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="device the benchmarks run on (default: auto, CUDA when available)",
    )
    group.addoption(
        "--bench-threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help="torch.set_num_threads(N) while a benchmark runs (default: %(default)s)",
    )


def measuring_requested(config) -> bool:
    """Whether the command line asked pytest-benchmark to measure (see module docstring)."""
    return any(config.getoption(name, default=None) for name in _MEASURING_OPTIONS)


def pytest_configure(config):
    # Runs before pytest-benchmark's own pytest_configure (which is trylast and reads the option
    # when it creates its session), so setting the option here is the same as passing
    # --benchmark-disable on the command line.
    if not config.pluginmanager.hasplugin("benchmark"):
        return
    if not measuring_requested(config):
        config.option.benchmark_disable = True
    # Saved runs keep every round's time (as --benchmark-json files always do): the regression
    # gate's rank test works on per-round samples, not on summary statistics.
    if config.getoption("benchmark_save", None) or config.getoption("benchmark_autosave", None):
        config.option.benchmark_save_data = True
    config.pluginmanager.register(_MachineInfo(), "convbn-benchmark-machine-info")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device) -> str:
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _MachineInfo:
    """pytest-benchmark hooks, registered only when pytest-benchmark is active."""

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, config):
        # trylast: after pytest-benchmark's time tables, which its own terminal summary prints.
        from verify.benchmarks.summary import format_memory_tables

        session = getattr(config, "_benchmarksession", None)
        groups = getattr(session, "groups", None)
        if not groups or getattr(session, "quiet", False):
            return
        sort = getattr(session, "sort", None)
        if sort:
            groups = [
                (name, sorted(benches, key=lambda b: (b.get(sort) is None, b.get(sort) or 0)))
                for name, benches in groups
            ]
        for line in format_memory_tables(groups):
            terminalreporter.write_line(line)

    @pytest.hookimpl
    def pytest_benchmark_update_machine_info(self, config, machine_info):
        import torch

        device = resolve_device(config.getoption("bench_device"))
        machine_info["torch"] = {
            "version": torch.__version__,
            "threads": config.getoption("bench_threads"),
            "device": str(device),
            "device_name": device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()
            if torch.backends.cudnn.is_available()
            else None,
        }


@pytest.fixture(scope="session")
def bench_device(request):
    """The torch.device benchmarks run on (``--bench-device``); skips when CUDA is asked for and
    absent."""
    import torch

    device = resolve_device(request.config.getoption("bench_device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda: no CUDA device available")
    return device


@pytest.fixture(autouse=True)
def _bench_threads(request):
    """Fix torch's intra-op thread count while a benchmark test runs."""
    if "benchmark" not in getattr(request, "fixturenames", ()):
        yield
        return
    import torch

    threads = request.config.getoption("bench_threads")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pytest_generate_tests(metafunc):
    """Parametrise ``bench_variant`` over the benchmark variants: the built-in ones, or those of
    ``--variant SPEC`` when given, plus the eager and checkpoint baselines."""
    if "bench_variant" not in metafunc.fixturenames:
        return
    from verify.benchmarks.models import benchmark_variants

    specs = metafunc.config.getoption("variant", default=None)
    variants = benchmark_variants(specs)
    metafunc.parametrize("bench_variant", variants, ids=[v.name for v in variants])
