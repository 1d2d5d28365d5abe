"""verify.specs: --variant SPEC loading, its errors, and the CLI's answer to a bad SPEC."""

from __future__ import annotations

import pytest

from fused.registry import BUILTIN_VARIANTS
from fused.variant import Variant
from tests.helpers import run_cli
from verify.specs import BUILTIN_SPEC, VariantSpecError, load_all, load_variants, select

MODULE = """
import torch.nn.functional as F
from fused import Variant

def fn(x, weight, *args, eps=1e-3, **kwargs):
    return F.batch_norm(F.conv2d(x, weight), None, None, training=True, eps=eps)

ONE = Variant("meta_one", fn, form="standard")
TWO = Variant("meta_two", fn)
MANY = [ONE, TWO]
AS_TUPLE = (TWO,)
DUPLICATE = [ONE, ONE]
NOT_A_VARIANT = 42
MIXED = [ONE, "meta_two"]
"""


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    (tmp_path / "meta_loader_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_module_attr_spec(module_dir):
    [one] = load_variants("meta_loader_mod:ONE")
    assert isinstance(one, Variant) and one.name == "meta_one"
    assert [(spec, v.name) for spec, v in load_all(["meta_loader_mod:ONE"])] == [
        ("meta_loader_mod:ONE", "meta_one")
    ]


def test_file_attr_spec_and_lists(module_dir):
    path = module_dir / "meta_loader_mod.py"
    names = [v.name for v in load_variants(f"{path}:MANY")]
    assert names == ["meta_one", "meta_two"]
    assert [v.name for v in load_variants(f"{path}:AS_TUPLE")] == ["meta_two"]
    specs = {v.name: spec for spec, v in load_all([f"{path}:MANY"])}
    assert specs["meta_one"] == f"{path}:MANY"


def test_builtin_spec():
    assert tuple(load_variants(BUILTIN_SPEC)) == tuple(BUILTIN_VARIANTS)
    assert [v.name for v in select(None)] == [v.name for v in BUILTIN_VARIANTS]
    assert {v.name: spec for spec, v in load_all(None)}["eager"] == BUILTIN_SPEC


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bad", "expected 'package.module:attr' or 'path/to/file.py:attr'"),
        (":ONE", "expected 'package.module:attr'"),
        ("meta_loader_mod:", "expected 'package.module:attr'"),
        ("no_such_module_xyz:ONE", "cannot import module 'no_such_module_xyz'"),
        ("meta_loader_mod:NOPE", "has no attribute 'NOPE'"),
        ("meta_loader_mod:NOT_A_VARIANT", "holds int, not a fused.Variant"),
        ("meta_loader_mod:MIXED", "MIXED[1] holds str, not a fused.Variant"),
    ],
)
def test_bad_specs(module_dir, spec, message):
    with pytest.raises(VariantSpecError) as info:
        load_variants(spec)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(VariantSpecError, match="no such file"):
        load_variants(f"{tmp_path}/absent.py:ONE")


def test_an_error_raised_by_the_suite_on_import_points_at_the_users_line(tmp_path):
    kernel = tmp_path / "typo_kernel.py"
    kernel.write_text(
        "from fused import Variant\n\nTYPO = Variant('typo', print, supports={'strid'})\n"
    )
    with pytest.raises(VariantSpecError, match=rf"ValueError at {kernel}:3: .*'strid'"):
        load_variants(f"{kernel}:TYPO")


def test_a_kernel_file_imports_its_neighbours(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    (tmp_path / "kernel_helpers_xyz.py").write_text(MODULE)
    (tmp_path / "uses_helpers.py").write_text("from kernel_helpers_xyz import ONE\n")
    assert [v.name for v in load_variants(f"{tmp_path / 'uses_helpers.py'}:ONE")] == ["meta_one"]


def test_duplicate_names(module_dir):
    with pytest.raises(VariantSpecError, match=r"duplicate variant names \['meta_one'\]"):
        select(["meta_loader_mod:DUPLICATE"])
    with pytest.raises(VariantSpecError, match="duplicate"):
        select(["meta_loader_mod:ONE", f"{module_dir / 'meta_loader_mod.py'}:MANY"])
    assert [v.name for v in select(["meta_loader_mod:ONE", "meta_loader_mod:TWO"])] == [
        "meta_one",
        "meta_two",
    ]


@pytest.fixture(scope="module")
def bad_spec_run():
    return run_cli(
        [
            "-m",
            "pytest",
            "verify/test_forward.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--variant",
            "bad",
        ]
    )


def test_cli_rejects_bad_spec(bad_spec_run):
    out = bad_spec_run.stdout
    # not a pass, a test failure, or "no tests"
    assert bad_spec_run.returncode not in (0, 1, 5), out
    assert "expected 'package.module:attr' or 'path/to/file.py:attr'" in out
    assert " passed" not in out and " failed" not in out


def test_cli_bad_spec_is_a_usage_error(bad_spec_run):
    assert bad_spec_run.returncode == pytest.ExitCode.USAGE_ERROR, bad_spec_run.stdout
