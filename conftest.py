# Root conftest: the suite's pytest plugins for `pytest verify` and `pytest tests` in the checkout,
# also when the package is not installed (PYTHONPATH=.). An installed package registers the same
# modules under the same names through its pytest11 entry points; pytest then skips these.
pytest_plugins = ["verify.plugin", "verify.benchmarks.plugin"]
