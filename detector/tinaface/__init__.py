"""Given (non-graded) parts of the TinaFace homework: configurations and small conv blocks."""
