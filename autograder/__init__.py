"""Grading for the kit's homeworks: per-unit tests with points, run against a sandboxed worker."""
