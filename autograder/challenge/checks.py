"""Scoring the final project's unit: the upload's predictions on a case, AP against a threshold.

The predictions come from the worker (``cases.detect_upload``); the ground truth never leaves this
process: the public case's from its own rendering of the public pictures, the hidden splits' from
the staff's cache (``autograder.staff.hidden_set``, imported only for the hidden checks, which no
student bundle holds). Before any score, the upload file is read here too (``weights_only``, within
the 50 MB limit, never built into a model) and refused when its weights are a published checkpoint
(``utils.published_weights``): the worker's own check runs beside student code, this one does not.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from autograder import feedback as fb
from autograder.challenge.cases import CASES, PUBLIC_IMAGES, PUBLIC_SPLIT, TIMEOUT, UPLOAD, upload_folder
from autograder.challenge.scoring import ap_text, score
from autograder.units import case_names
from utils.challenge import MAX_BYTES
from utils.published_weights import distance, refusal

UNIT = "challenge"


def _cached(submission, key: str, compute):
    """``compute()`` once per submission; a grading failure is kept too, and raised again."""
    store = submission.__dict__.setdefault("_challenge_scores", {})
    if key not in store:
        try:
            store[key] = compute()
        except fb.GradingFailure as err:
            store[key] = err
    if isinstance(store[key], fb.GradingFailure):
        raise store[key]
    return store[key]


def cached_scores(submission, key: str):
    """What the checks computed and kept (``"public"``, ``"hidden"``, ``"state"``, ``"published"``): a
    value, the ``GradingFailure`` it ended in, or None where no check asked for it."""
    return submission.__dict__.get("_challenge_scores", {}).get(key)


def upload_path(submission) -> Path | None:
    """The upload file as the grader staged it (the worker's submission folder), or, in a notebook's
    check cell, the one beside ``SUBMISSION_DIR``; None when there is none."""
    sandbox = getattr(submission, "sandbox", None)
    if sandbox is not None:
        path = Path(sandbox.submission) / UPLOAD
        return path if path.is_file() else None
    try:
        return upload_folder(submission.namespace) / UPLOAD
    except (FileNotFoundError, AttributeError):
        return None


def upload_state(submission) -> dict | None:
    """The upload's state dict read here (``weights_only=True``; None when absent, over the limit or
    unreadable: the worker's check names why)."""
    def compute():
        path = upload_path(submission)
        if path is None or path.stat().st_size > MAX_BYTES:
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - the worker's check names what is wrong with the file
            return None
        state = payload.get("state_dict") if isinstance(payload, dict) else None
        return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)} \
            if isinstance(state, dict) else None
    return _cached(submission, "state", compute)


def published_distances(submission) -> list:
    """The upload's distance from each published checkpoint (``utils.published_weights.distance``),
    measured once per submission and read by the checks, the leaderboard and the staff review."""
    return _cached(submission, "published", lambda: distance(upload_state(submission) or {}))


def published_match(submission):
    """The published checkpoint the upload's weights are (``utils.published_weights.Match``), or None."""
    return next((m for m in published_distances(submission) if m.same), None)


def refuse_published(submission) -> None:
    match = published_match(submission)
    if match is not None:
        raise fb.GradingFailure(f"{UPLOAD}: {refusal(match)}", fb.WRONG)


def _output(submission, case: str):
    """The worker's predictions on ``case``; past the unit's time limit, a failure that says what to change."""
    try:
        return submission.output(UNIT, case)
    except fb.GradingFailure as err:
        if err.kind != fb.TIMEOUT:
            raise
        raise fb.GradingFailure(f"too slow: {err}; the upload must be checked, built and run on every "
                                f"public and hidden picture within {TIMEOUT:g} s on one CPU core: use a "
                                f"lighter config, smaller test scales or fewer candidates", fb.TIMEOUT) from None


def public_scores(submission) -> dict:
    """AP of the upload on the public pictures."""
    def compute():
        predictions = _output(submission, PUBLIC_SPLIT)
        truth = submission.inputs(UNIT, PUBLIC_SPLIT)["ground_truth"]
        return score((predictions or {}).get(PUBLIC_SPLIT, {}), Path(truth), PUBLIC_IMAGES)
    return _cached(submission, PUBLIC_SPLIT, compute)


def hidden_scores(submission) -> dict:
    """{split: AP of the upload} on the hidden splits (``autograder.staff.hidden_set.hidden_scores``)."""
    def compute():
        predictions = _output(submission, case_names(CASES, public=False)[0])
        return importlib.import_module("autograder.staff.hidden_set").hidden_scores(predictions)
    return _cached(submission, "hidden", compute)


def _at_least(scores: dict, setting: str, min_ap: float, what: str) -> None:
    ap = scores["ap"].get(setting, 0.0)
    if ap < min_ap:
        raise fb.GradingFailure(f"{ap_text(scores, what)}; needs AP {setting} >= {min_ap:.2f}", fb.WRONG)


def check_public(submission, setting: str, min_ap: float) -> None:
    scores = public_scores(submission)          # the worker's refusals first: they name the problem
    refuse_published(submission)
    _at_least(scores, setting, min_ap, "public pictures")


def check_hidden(submission, split: str, setting: str, min_ap: float) -> None:
    scores = hidden_scores(submission)
    refuse_published(submission)
    _at_least(scores[split], setting, min_ap, f"hidden pictures of split '{split}'")
