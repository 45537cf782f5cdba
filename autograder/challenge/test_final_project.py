"""Grading of the final project (``1_final_project.ipynb`` + the packed upload ``challenge.pt``).

One unit, ``challenge``: the uploaded detector (the student's own model code and post-processing,
their trained weights) on public pictures (run by the notebook's check cell and the student bundle
too) and on the hidden test set's two splits, with points from AP-hard thresholds (cumulative
tiers). The hidden split 'similar' is the leaderboard's (``report_extras``): its results are shown
before the due date (``visible=True``; its pictures stay secret); 'shifted' is shown after it, a
private leaderboard that repeated uploads cannot tune on. Thresholds: README, "Final project".
"""
from autograder.challenge import checks
from autograder.grading import graded

HW = "challenge"


@graded("challenge", 2, "public pictures: the upload loads, runs and reaches AP hard >= 0.15")
def test_public(submission):
    checks.check_public(submission, "hard", 0.15)


@graded("challenge", 2, "hidden split 'similar': AP hard >= 0.15", public=False, visible=True)
def test_similar_015(submission):
    checks.check_hidden(submission, "similar", "hard", 0.15)


@graded("challenge", 2, "hidden split 'similar': AP hard >= 0.35", public=False, visible=True)
def test_similar_035(submission):
    checks.check_hidden(submission, "similar", "hard", 0.35)


@graded("challenge", 2, "hidden split 'similar': AP hard >= 0.55", public=False, visible=True)
def test_similar_055(submission):
    checks.check_hidden(submission, "similar", "hard", 0.55)


@graded("challenge", 2, "hidden split 'shifted': AP hard >= 0.15", public=False)
def test_shifted_015(submission):
    checks.check_hidden(submission, "shifted", "hard", 0.15)


@graded("challenge", 2, "hidden split 'shifted': AP hard >= 0.30", public=False)
def test_shifted_030(submission):
    checks.check_hidden(submission, "shifted", "hard", 0.30)
