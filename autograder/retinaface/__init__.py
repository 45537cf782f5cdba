"""Grading of the RetinaFace homework: ``cases*.py`` (which cell, how it is called, seeded inputs),
``checks.py`` (comparisons and their feedback), ``oracles.py`` (slow loop references), ``inputs.py``
(random boxes and faces) and ``test_*.py`` (the graded tests with their points)."""
