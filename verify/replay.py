"""Replay one case of one property on one variant, exactly as a failure report printed it.

python -m verify.replay --variant SPEC --name NAME --property PROPERTY --case JSON
"""

from __future__ import annotations

import argparse
import sys

from verify.case import Case
from verify.report import PropertyFailure, ReportSession
from verify.runner import uninitialized_memory_filled


def replay(spec: str, name: str, prop: str, case: Case) -> int:
    from fused.triton_support import configure_interpreter
    from verify.properties import PROPERTIES
    from verify.variants import load_variants

    configure_interpreter()  # before a variant module defines Triton kernels (as pytest verify)

    variants = {v.name: v for v in load_variants(spec)}
    if name not in variants:
        print(f"no variant named {name!r} in {spec}; have {sorted(variants)}", file=sys.stderr)
        return 2
    if variants[name].unavailable:
        print(f"variant {name!r} is unavailable: {variants[name].unavailable}", file=sys.stderr)
        return 2
    if prop not in PROPERTIES:
        print(f"unknown property {prop!r}; have {sorted(PROPERTIES)}", file=sys.stderr)
        return 2
    import pytest

    from verify.legality import IllegalCase, check
    from verify.runner import ContractViolation, KernelRaised

    try:
        check(case)
        with uninitialized_memory_filled():  # as in `pytest verify`
            ratio = PROPERTIES[prop].check(variants[name], case)
    except pytest.skip.Exception as skip:  # the property does not apply to this variant
        print(f"SKIP: {skip.msg}")
        return 0
    except PropertyFailure as failure:
        session = ReportSession()
        session.variant_specs[name] = spec  # the replay line names the SPEC it came from
        print(f"FAIL\n{session.complete(failure)}")
        return 1
    except (KernelRaised, ContractViolation) as error:
        print(f"FAIL\nvariant {name!r} on property {prop!r}: {error}\n  case: {case.describe()}")
        return 1
    except IllegalCase as error:
        print(f"not replayed: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the suite's own failure, never the kernel's
        print(
            f"SUITE ERROR (convbn-verify failed on its own, not a finding about {name!r}): "
            f"property {prop!r} raised {type(error).__name__}: {error}\n"
            f"  case: {case.describe()}",
            file=sys.stderr,
        )
        return 3
    print(
        f"PASS: variant {name!r}, property {prop!r}, worst error {ratio:.3g}x the bound\n"
        f"  case: {case.describe()}"
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verify.replay", description=__doc__.split("\n")[1]
    )
    parser.add_argument("--variant", required=True, metavar="SPEC")
    parser.add_argument("--name", required=True, help="the variant's name within SPEC")
    parser.add_argument("--property", required=True, dest="prop")
    parser.add_argument("--case", required=True, help="the case as JSON, from the failure report")
    args = parser.parse_args(argv)
    return replay(args.variant, args.name, args.prop, Case.from_json(args.case))


if __name__ == "__main__":
    sys.exit(main())
