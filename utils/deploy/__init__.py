"""Packaging a homework for a course: the student bundle (``student``, public checks only) and the
Gradescope autograder zip (``gradescope``); ``python -m utils.deploy --help``."""
