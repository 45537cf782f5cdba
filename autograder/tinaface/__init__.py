"""Grading of the TinaFace homework (``solutions/tinaface``)."""
