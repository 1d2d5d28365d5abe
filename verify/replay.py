"""Replay one case of one property on one variant, exactly as a failure report printed it.

python -m verify.replay --variant SPEC --name NAME --property PROPERTY --case JSON

Exits 0 when the property holds (or does not apply), 1 when the variant breaks it, 2 on a usage
error (a SPEC, name, property or case that cannot be replayed) and 3 when the suite itself fails.
"""

from __future__ import annotations

import argparse
import sys

from fused.variant import Variant
from verify.case import Case, CaseJSONError
from verify.failures import full_report
from verify.report import PropertyFailure, ReportSession
from verify.runner import uninitialized_memory_filled

USAGE_ERROR = 2  # argparse's exit status for a command line it cannot use


class ReplayUsageError(Exception):
    """What the user asked for cannot be replayed; the message (one line) says why."""


def replay(spec: str, name: str, prop: str, case: Case | str) -> int:
    """Replay `case` (a Case, or its JSON from a failure report) on property `prop` of variant
    `name` in `spec`; prints the verdict and returns the exit status."""
    try:
        variant, check = _resolve(spec, name, prop)
        case = _case_for(variant, case)
    except ReplayUsageError as error:
        print(f"verify.replay: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    return _run(spec, variant, prop, check, case)


def _resolve(spec: str, name: str, prop: str):
    """The variant and the property's check, in the order the command line names them, so the
    first mistake reported is the first one typed."""
    from fused.triton_support import configure_interpreter
    from verify.properties import PROPERTIES
    from verify.specs import VariantSpecError, load_variants

    configure_interpreter()  # before a variant module defines Triton kernels (as pytest verify)
    try:
        variants = {v.name: v for v in load_variants(spec)}
    except VariantSpecError as error:
        raise ReplayUsageError(str(error)) from None
    if name not in variants:
        raise ReplayUsageError(f"no variant named {name!r} in {spec}; have {sorted(variants)}")
    if prop not in PROPERTIES:
        raise ReplayUsageError(f"unknown property {prop!r}; have {sorted(PROPERTIES)}")
    return variants[name], PROPERTIES[prop].check


def _case_for(variant: Variant, case: Case | str) -> Case:
    """`case` as the variant can be given it. pytest verify only ever draws cases of the variant's
    form and features, so a case outside them is the user's mistake, never a finding about the
    kernel; the variant's own refusal (UnsupportedFeatureError) would read as one."""
    if isinstance(case, str):
        try:
            # A hand-written case may leave the form out: the variant's is the only one it can be.
            case = Case.from_json(case, form=variant.form)
        except CaseJSONError as error:
            raise ReplayUsageError(f"--case: {error}") from None
    if case.form != variant.form:
        raise ReplayUsageError(
            f"--case has form {case.form!r}, but variant {variant.name!r} implements form "
            f'{variant.form!r}; leave "form" out of the case or make it {variant.form!r}'
        )
    undeclared = sorted(case.features() - variant.supports)
    if undeclared:
        raise ReplayUsageError(
            f"--case uses feature(s) {undeclared} that variant {variant.name!r} does not declare "
            f"(supports={sorted(variant.supports)}); pytest verify never gives it such a case"
        )
    from verify.legality import problems

    illegal = problems(case)
    if illegal:
        raise ReplayUsageError(f"--case is not a legal case: {'; '.join(illegal)}")
    if variant.unavailable:
        raise ReplayUsageError(f"variant {variant.name!r} is unavailable: {variant.unavailable}")
    return case


def _run(spec: str, variant: Variant, prop: str, check, case: Case) -> int:
    import pytest

    from verify.runner import ContractViolation, KernelRaised, kernel_failure

    session = ReportSession()
    session.variant_specs[variant.name] = spec  # the replay line names the SPEC it came from
    try:
        with uninitialized_memory_filled():  # as in `pytest verify`
            ratio = check(variant, case)
    except pytest.skip.Exception as skip:  # the property does not apply to this variant
        print(f"SKIP: {skip.msg}")
        return 0
    except PropertyFailure as failure:
        _label_upstream(variant, prop, failure)
        print(f"FAIL\n{full_report(session.complete(failure))}")
        return 1
    except (KernelRaised, ContractViolation) as error:
        # As verify.hunt reports it, the kernel's traceback included (the failure's cause).
        raised = kernel_failure(error, variant.name, prop, case)
        print(f"FAIL\n{full_report(session.complete(raised))}")
        return 1
    except Exception as error:  # noqa: BLE001 - the suite's own failure, never the kernel's
        print(
            f"SUITE ERROR (convbn-verify failed on its own, not a finding about "
            f"{variant.name!r}): property {prop!r} raised {type(error).__name__}: {error}\n"
            f"  case: {case.describe()}",
            file=sys.stderr,
        )
        return 3
    print(
        f"PASS: variant {variant.name!r}, property {prop!r}, worst error {ratio:.3g}x the bound\n"
        f"  case: {case.describe()}"
    )
    return 0


def _label_upstream(variant: Variant, prop: str, failure: PropertyFailure) -> None:
    """As `pytest verify` labels it: a finding PyTorch's own ops share (verify.upstream)."""
    from verify import upstream
    from verify.properties import PROPERTIES

    verdict = upstream.judge(variant, PROPERTIES[prop], failure.case)
    if verdict is not None:
        failure.details += verdict.report_lines(failure)
        failure.headline = verdict.headline(failure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verify.replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--variant", required=True, metavar="SPEC")
    parser.add_argument("--name", required=True, help="the variant's name within SPEC")
    parser.add_argument("--property", required=True, dest="prop")
    parser.add_argument(
        "--case",
        required=True,
        help='the case as JSON, from the failure report; "form" may be left out (the variant\'s)',
    )
    args = parser.parse_args(argv)
    return replay(args.variant, args.name, args.prop, args.case)


if __name__ == "__main__":
    sys.exit(main())
