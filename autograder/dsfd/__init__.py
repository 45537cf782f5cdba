"""Grading of the DSFD homework: ``cases.py`` (which cell, how it is called, seeded inputs),
``checks.py`` (comparisons and the feedback naming classic mistakes), ``oracles.py`` (independent
or slow-loop references) and ``test_dsfd*.py`` (the graded tests with their points)."""
