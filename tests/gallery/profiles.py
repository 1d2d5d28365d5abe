"""Hypothesis profiles for running the gallery through `pytest verify` (load with
`-p tests.gallery.profiles`, select with `--hypothesis-profile NAME`).

* `gallery`: the suite's `ci` profile (derandomised, 25 examples) without the shrink phase. Each
  property stops at its first failing example, which is all the gallery needs to know (the bug was
  caught, by which property, for which reason), and its failures (686 of 3,433 tests run at
  3e0432d) are not shrunk. On 2 quiet cores with one thread each, tests/test_gallery.py's run of
  the suite took 171 s with it at 3e0432d (it was ~40 s with 27 wrong kernels, before the
  network tiers and the program, memory and size bugs).
* `gallery_fuzz`: the suite's `fuzz` profile with max_examples from $CONVBN_FUZZ_EXAMPLES (default
  2000, fuzz's own count), so the zero-false-alarm hunt can be tried out quickly.
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings

import verify.profiles  # noqa: F401 - registers `ci` and `fuzz`

settings.register_profile(
    "gallery",
    parent=settings.get_profile("ci"),
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target),
)
settings.register_profile(
    "gallery_fuzz",
    parent=settings.get_profile("fuzz"),
    max_examples=int(os.environ.get("CONVBN_FUZZ_EXAMPLES", "2000")),
)
# Triton kernels on the interpreter get a quarter of a profile's examples (INTERPRETED_SHARE in
# verify/hunt.py): four times `gallery`'s count gives them the ci profile's 25 small
# examples and its shares at the larger tiers, where the split and tail bugs live.
settings.register_profile(
    "gallery_interpreted",
    parent=settings.get_profile("gallery"),
    max_examples=4 * settings.get_profile("ci").max_examples,
)
