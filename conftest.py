# Root conftest: loads the suite's pytest plugins for both `pytest verify` and `pytest tests`.
pytest_plugins = ["verify.plugin", "verify.benchmarks.plugin"]
