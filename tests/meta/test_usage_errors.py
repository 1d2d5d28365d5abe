"""Every problem loading a --variant is one line and pytest's usage-error exit (4), never an
INTERNALERROR or a traceback."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

GOOD_HEAD = "import torch.nn.functional as F\nfrom fused import Variant\n"
FN = (
    "def fn(x, weight, *args, eps=1e-3, **kwargs):\n"
    "    return F.batch_norm(F.conv2d(x, weight), None, None, training=True, eps=eps)\n"
)

CASES = {
    # name: (file contents or None for a missing file, attr, what the line must say)
    "missing file": (None, "V", "no such file"),
    "syntax error": (GOOD_HEAD + "def fn(x:\n", "V", "syntax error in "),
    "import error": (
        "import no_such_module_for_convbn\n",
        "V",
        "importing {path} failed: ModuleNotFoundError",
    ),
    "exception at import": (
        GOOD_HEAD + "raise RuntimeError('no GPU here')\n",
        "V",
        "raised RuntimeError at {path}:3: no GPU here",
    ),
    "unknown feature": (
        GOOD_HEAD + FN + "V = Variant('v', fn, supports={'strid'})\n",
        "V",
        "unknown feature(s) ['strid']",
    ),
    "not a variant": (GOOD_HEAD + FN + "V = fn\n", "V", "holds function, not a fused.Variant"),
    "no such attribute": (GOOD_HEAD + FN, "V", "has no attribute 'V'"),
    "exit at import": ("import sys\nsys.exit('no')\n", "V", "raised SystemExit"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_variant_file_is_one_line_and_exit_4(name, tmp_path):
    source, attr, expected = CASES[name]
    path = tmp_path / "user_kernel.py"
    if source is not None:
        path.write_text(source)
    proc = run_cli(
        [
            "-m",
            "pytest",
            "verify/test_forward.py",
            "-p",
            "no:cacheprovider",
            "--variant",
            f"{path}:{attr}",
        ]
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout
    assert len(lines) == 1, proc.stdout
    [line] = lines
    assert line.startswith(f"ERROR: --variant {path}:{attr}: "), line
    assert expected.format(path=path) in line, line
    assert "INTERNALERROR" not in proc.stdout and "Traceback" not in proc.stdout
