"""One entry of the planted-bug gallery (`bugs.py` and the modules it merges)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Planted:
    """A planted bug: its implementation (a Variant fn with the form it computes, `impl.form`),
    the properties that must catch it with the regex each one's failure report must match, and
    whether its Variant declares itself memory-saving (then `saved_memory` holds it to that)."""

    impl: Any
    caught_by: dict[str, str]
    memory_saving: bool = False

    @property
    def form(self) -> str:
        return self.impl.form
