"""Grading of the Face R-FCN homework (cases, checks, slow oracles, graded tests)."""
