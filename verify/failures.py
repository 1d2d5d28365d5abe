"""The text of a failed property test: the suite's report first (what broke, the case, the worst
element, the replay line), then the kernel's own error when it raised, then Hypothesis's notes.
pytest's traceback of the suite's frames is left out (`--tb=long` shows it)."""

from __future__ import annotations

import builtins
import re
import traceback

from verify.report import PropertyFailure

# Python 3.11's builtin; on 3.10 (which pyproject allows) Hypothesis raises no exception groups.
_EXCEPTION_GROUPS = getattr(builtins, "BaseExceptionGroup", ())

_KERNEL_FRAMES = 6


def pytest_report(error: BaseException) -> str | None:
    """The report of a PropertyFailure (or a group of them, when Hypothesis found several);
    None for anything else, which keeps pytest's own report."""
    failures = property_failures(error)
    if not failures:
        return None
    return "\n\n".join(full_report(f) for f in failures) + (
        "\n\n(pytest's traceback of the suite's frames: --tb=long)"
    )


def property_failures(error: BaseException) -> list[PropertyFailure]:
    if isinstance(error, PropertyFailure):
        return [error]
    if isinstance(error, _EXCEPTION_GROUPS):
        # A report only when every leaf of the group is a property failure.
        found = [property_failures(e) for e in error.exceptions]
        return [leaf for leaves in found for leaf in leaves] if found and all(found) else []
    return []


def full_report(failure: PropertyFailure) -> str:
    """One failure as pytest and `verify.replay` show it: the report, the kernel's innermost
    frames when it raised, and Hypothesis's notes worth keeping."""
    parts = [str(failure)]
    cause = failure.__cause__
    if cause is not None:
        frames = traceback.format_exception(
            type(cause), cause, cause.__traceback__, limit=-_KERNEL_FRAMES, chain=False
        )
        parts.append(
            "  the kernel's error (innermost frames):\n"
            + "".join("    " + line for line in "".join(frames).splitlines(True))
        )
    notes = [_squeeze(n) for n in getattr(failure, "__notes__", []) if _worth_keeping(n)]
    if notes:
        parts.append("  hypothesis: " + "\n  hypothesis: ".join(notes))
    return "\n".join(parts)


def _worth_keeping(note: str) -> bool:
    # The @reproduce_failure blob and the drawn Case repeat what the replay and case lines say;
    # the explain phase's "lines only failing cases ran" are the suite's own reporting lines.
    note = note.strip()
    return bool(note) and not (
        "reproduce_failure" in note
        or note.startswith(
            ("You can reproduce this example", "Draw ", "Explanation:", "These lines were")
        )
        or re.fullmatch(r"\S+\.py:\d+", note)
    )


def _squeeze(note: str, width: int = 240) -> str:
    flat = " ".join(note.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
