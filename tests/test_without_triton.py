"""Without triton installed the Triton built-ins stay listed and `pytest verify` skips them with
the reason. Simulated in a subprocess where `import triton` fails (sys.modules['triton'] = None)."""

from __future__ import annotations

import subprocess
import textwrap

from tests.helpers import run_cli

BLOCK_TRITON = "import sys; sys.modules['triton'] = None\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return run_cli(["-c", BLOCK_TRITON + textwrap.dedent(code)], timeout=600)


def test_registry_lists_triton_variants_as_unavailable():
    done = _python("""
        import pytest
        from fused.registry import BUILTIN_VARIANTS
        from fused.variant import VariantUnavailableError
        triton = [v for v in BUILTIN_VARIANTS if v.triton]
        assert [v.name for v in triton] == ["triton_standard", "triton_tutorial"], triton
        for v in triton:
            assert v.unavailable.startswith("triton is not installed"), v.unavailable
            with pytest.raises(VariantUnavailableError, match="triton is not installed"):
                v(None, None)
        assert all(not v.unavailable for v in BUILTIN_VARIANTS if not v.triton)
        print("ok")
    """)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout


def test_pytest_verify_skips_them_with_the_reason():
    done = _python("""
        import pytest
        # In-process: the blocked import lives in this interpreter, not in an isolated worker.
        sys.exit(pytest.main(["verify", "-q", "-rs", "-p", "no:cacheprovider",
                              "--verify-isolation", "off", "-k",
                              "triton and (forward or bad_inputs or mnist)"]))
    """)
    output = done.stdout
    assert done.returncode == 0, output
    assert "passed" not in output.split("short test summary")[-1], output
    for name in ("triton_standard", "triton_tutorial"):
        assert (
            f"variant '{name}' is unavailable: triton is not installed "
            f"(pip install 'convbn-verify[triton]')"
        ) in output, output
