"""Scoring an upload's predictions with the WIDER protocol (``utils.evaluate``): shared by the
homework's checks (``checks``) and the staff's hidden splits (``autograder.staff.hidden_set``). It ships
in the student bundle (the public tests score with it), so it imports nothing of ``staff/``."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from utils.evaluate import evaluate

CURVE_POINTS = 50


def as_numpy(predictions: dict) -> dict:
    """{event: {name: [K, 5]}} as ``utils.evaluate`` reads it; anything malformed is dropped (a
    tensor that is not K x 5 numbers, rows with NaN or inf: the upload's code made them)."""
    out = {}
    for event, images in (predictions or {}).items():
        if isinstance(images, dict):
            rows = {str(n): t.detach().double().reshape(-1, 5) for n, t in images.items()
                    if isinstance(t, torch.Tensor) and not t.is_complex() and t.numel() % 5 == 0}
            out[str(event)] = {n: r[torch.isfinite(r).all(dim=1)].numpy() for n, r in rows.items()}
    return out


def score(predictions: dict, ground_truth: Path, images: int) -> dict:
    """{"ap": {setting: AP}, "images": n, "faces": {setting: n}, "curves": {setting: {"recall": [..],
    "precision": [..]}}} of one split's predictions (curves thinned to ``CURVE_POINTS`` points,
    small enough for a report.json)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # missing images count as no detections
        result = evaluate(as_numpy(predictions), Path(ground_truth))
    return {"ap": {k: float(v) for k, v in result.ap.items()}, "images": images,
            "faces": dict(result.num_faces), "curves": {k: thin_curve(*c) for k, c in result.curves.items()}}


def thin_curve(precision, recall) -> dict:
    """A precision-recall curve (``utils.evaluate``: one point per score threshold) at
    ``CURVE_POINTS`` evenly spaced thresholds, as plain lists rounded to 4 digits."""
    keep = np.unique(np.linspace(0, len(precision) - 1, CURVE_POINTS).round().astype(int)) if len(precision) else []
    return {"recall": [round(float(recall[i]), 4) for i in keep],
            "precision": [round(float(precision[i]), 4) for i in keep]}


def ap_text(scores: dict, what: str = "hidden pictures") -> str:
    ap = scores["ap"]
    return (f"AP easy / medium / hard {ap.get('easy', 0):.3f} / {ap.get('medium', 0):.3f} / "
            f"{ap.get('hard', 0):.3f} on {scores['images']} {what}")
