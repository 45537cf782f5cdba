"""Scoring the final project's unit: the upload's predictions on a case, AP against a threshold.

The predictions come from the worker (``cases.detect_upload``); the ground truth never leaves this
process: the public case's from its own rendering of the public pictures, the hidden splits' from
the staff's cache (``autograder.staff.hidden_set``, imported only for the hidden checks, which no
student bundle holds).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from autograder import feedback as fb
from autograder.challenge.cases import CASES, PUBLIC_IMAGES, PUBLIC_SPLIT
from autograder.challenge.scoring import ap_text, score
from autograder.units import case_names

UNIT = "challenge"


def _cached(submission, key: str, compute):
    store = submission.__dict__.setdefault("_challenge_scores", {})
    if key not in store:
        store[key] = compute()
    return store[key]


def public_scores(submission) -> dict:
    """AP of the upload on the public pictures."""
    def compute():
        predictions = submission.output(UNIT, PUBLIC_SPLIT)
        truth = submission.inputs(UNIT, PUBLIC_SPLIT)["ground_truth"]
        return score((predictions or {}).get(PUBLIC_SPLIT, {}), Path(truth), PUBLIC_IMAGES)
    return _cached(submission, PUBLIC_SPLIT, compute)


def hidden_scores(submission) -> dict:
    """{split: AP of the upload} on the hidden splits (the staff's scoring, ``score_splits``)."""
    def compute():
        predictions = submission.output(UNIT, case_names(CASES, public=False)[0])
        staff = importlib.import_module("autograder.staff.challenge")
        splits = {name: staff.render(name) for name in staff.SPLITS}
        return staff.score_splits(predictions or {}, splits)
    return _cached(submission, "hidden", compute)


def _at_least(scores: dict, setting: str, min_ap: float, what: str) -> None:
    ap = scores["ap"].get(setting, 0.0)
    if ap < min_ap:
        raise fb.GradingFailure(f"{ap_text(scores, what)}; needs AP {setting} >= {min_ap:.2f}", fb.WRONG)


def check_public(submission, setting: str, min_ap: float) -> None:
    _at_least(public_scores(submission), setting, min_ap, "public pictures")


def check_hidden(submission, split: str, setting: str, min_ap: float) -> None:
    _at_least(hidden_scores(submission)[split], setting, min_ap, f"hidden pictures of split '{split}'")
