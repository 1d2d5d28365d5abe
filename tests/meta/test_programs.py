"""The `programs` property: its draws reach every program, its checks pass correct kernels in each
program and catch each kind of wrongness, and a declared limitation is held to what it promises.
End to end, the planted program bugs are caught by `pytest verify` (tests/gallery/program_bugs.py
in tests/test_gallery.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given

from fused.registry import builtin_variant
from fused.variant import BN_FEATURES, CONV_FEATURES, Variant
from tests.gallery import program_bugs
from tests.gallery._correct import OUTPUT_SAVING_FEATURES, OutputSaving
from tests.helpers import run_cli
from tests.meta.helpers import TINY_CASE, derandomised
from verify import legality
from verify.case import GRAD_MODES, PROGRAMS, Case
from verify.properties import programs
from verify.report import PropertyFailure
from verify.runner import KernelRaised

ALL = frozenset(CONV_FEATURES | BN_FEATURES)
CASE = TINY_CASE.replace(bias=True, affine=True, running_stats=True, form="standard", seed=5)


def test_draws_reach_every_program_and_every_grad_mode_of_repeated():
    seen_programs, seen_modes = set(), set()

    # Derandomised: a coverage claim about a fixed number of draws must not depend on the seed.
    @derandomised(200)
    @given(case=programs.strategy(Variant("all", lambda *a, **k: None, supports=ALL)))
    def draw(case):
        assert legality.problems(case) == []
        seen_programs.add(case.program)
        if case.program == "repeated":
            seen_modes.add(case.grad_mode)
        else:
            assert case.grad_mode == "enabled"

    draw()
    assert seen_programs == set(PROGRAMS)
    assert seen_modes == set(GRAD_MODES)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name", ["eager", "fused_standard"])
def test_correct_kernels_pass_every_program(name, program, training):
    case = CASE.replace(program=program, training=training)
    modes = GRAD_MODES if program == "repeated" else ("enabled",)
    for mode in modes:
        assert programs.check(builtin_variant(name), case.replace(grad_mode=mode)) < 1


def test_legality_names_an_unknown_program_and_a_program_without_autograd():
    assert legality.problems(CASE.replace(program="twice")) == ["unknown program 'twice'"]
    assert legality.problems(CASE.replace(program="accumulate", grad_mode="no_grad")) == [
        "program 'accumulate' needs autograd, not grad mode 'no_grad'"
    ]
    assert legality.problems(CASE.replace(program="repeated", grad_mode="inference_mode")) == []


def test_program_round_trips_through_json_and_shows_in_the_description():
    case = CASE.replace(program="retain_graph")
    assert Case.from_json(case.to_json()) == case
    assert "program=retain_graph" in case.describe()
    assert "program" not in CASE.to_json()


def _output_saving(**options) -> Variant:
    return Variant(
        "output_saving",
        OutputSaving("standard"),
        form="standard",
        supports=OUTPUT_SAVING_FEATURES,
        **options,
    )


IN_PLACE = ("relu_inplace", "add_inplace", "mul_inplace")


@pytest.mark.parametrize("program", IN_PLACE)
def test_a_declared_inplace_limitation_passes_when_backward_raises_autograds_error(program):
    case = CASE.replace(affine=False, program=program)
    assert programs.check(_output_saving(limitations={"inplace_output"}), case) == 0.0


@pytest.mark.parametrize("program", IN_PLACE)
def test_an_undeclared_one_fails_and_says_how_to_declare_it(program):
    case = CASE.replace(affine=False, program=program)
    with pytest.raises(PropertyFailure, match=r"declare limitations=\{'inplace_output'\}"):
        programs.check(_output_saving(), case)


def test_a_declared_limitation_does_not_excuse_wrong_numbers():
    wrong = program_bugs.OutputKeptOffTheBooks("standard")
    variant = Variant(
        "off_the_books",
        wrong,
        form="standard",
        supports=OUTPUT_SAVING_FEATURES,
        limitations={"inplace_output"},
    )
    case = CASE.replace(affine=False, program="mul_inplace")
    with pytest.raises(PropertyFailure, match=r"after `out\.mul_\(0\.5\)` on the output"):
        programs.check(variant, case)


def test_a_kernel_raising_in_the_second_backward_pass_is_the_kernels_finding():
    variant = Variant("frees", program_bugs.FreesStatisticsAfterBackward("tutorial"), supports=ALL)
    with pytest.raises(KernelRaised, match="AttributeError in backward"):
        programs.check(variant, CASE.replace(form="tutorial", program="retain_graph"))


@pytest.mark.parametrize(
    "names, error",
    [({"inplace"}, "unknown name(s) ['inplace'] in limitations"), ("inplace_output", "string")],
)
def test_a_misspelt_limitation_is_refused(names, error):
    with pytest.raises((ValueError, TypeError), match=re.escape(error)):
        Variant("v", lambda *a, **k: None, limitations=names)


def test_the_end_of_run_table_names_a_declared_limitation():
    proc = run_cli(
        [
            "-m",
            "pytest",
            "verify/test_programs.py",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-k",
            "small",
            "--variant",
            "tests.gallery._correct:CORRECT",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (
        "variant 'correct_output_saving_standard' declares limitation 'inplace_output': in-place "
        "ops on its output before backward make backward raise autograd's in-place error"
    ) in proc.stdout
