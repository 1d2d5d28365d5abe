"""Replay one case of one property on one variant, exactly as a failure report printed it.

    python -m verify.replay --variant SPEC --name NAME --property PROPERTY --case JSON
"""
from __future__ import annotations

import argparse
import sys

from verify.case import Case
from verify.report import PropertyFailure


def replay(spec: str, name: str, prop: str, case: Case) -> int:
    from verify.properties import PROPERTIES
    from verify.variants import load_variants

    variants = {v.name: v for v in load_variants(spec)}
    if name not in variants:
        print(f"no variant named {name!r} in {spec}; have {sorted(variants)}", file=sys.stderr)
        return 2
    if prop not in PROPERTIES:
        print(f"unknown property {prop!r}; have {sorted(PROPERTIES)}", file=sys.stderr)
        return 2
    import pytest

    try:
        ratio = PROPERTIES[prop].check(variants[name], case)
    except pytest.skip.Exception as skip:   # the property does not apply to this variant
        print(f"SKIP: {skip.msg}")
        return 0
    except PropertyFailure as failure:
        print(f"FAIL\n{failure}")
        return 1
    except Exception as error:  # noqa: BLE001 - a crash on a legal case is a failure too
        print(f"FAIL\nvariant {name!r} raised {type(error).__name__} on property {prop!r}: {error}"
              f"\n  case: {case.describe()}")
        return 1
    print(f"PASS: variant {name!r}, property {prop!r}, worst error {ratio:.3g}x the bound\n"
          f"  case: {case.describe()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.replay", description=__doc__.split("\n")[1])
    parser.add_argument("--variant", required=True, metavar="SPEC")
    parser.add_argument("--name", required=True, help="the variant's name within SPEC")
    parser.add_argument("--property", required=True, dest="prop")
    parser.add_argument("--case", required=True, help="the case as JSON, from the failure report")
    args = parser.parse_args(argv)
    return replay(args.variant, args.name, args.prop, Case.from_json(args.case))


if __name__ == "__main__":
    sys.exit(main())
