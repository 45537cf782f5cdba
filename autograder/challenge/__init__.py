"""Grading of the final project (``challenge``): a student's own trained detector, uploaded as
``challenge.pt`` beside the notebooks, on public pictures and on the hidden test set."""
