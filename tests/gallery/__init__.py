"""Planted-bug gallery for `pytest verify`: wrong kernels (bugs.py), the published tutorial
(tutorial_published.py), the correct base they are built from (_correct.py), and the Hypothesis
profiles the gallery run uses (profiles.py). tests/test_gallery.py runs them all."""
