"""Scoring an upload's predictions with the WIDER protocol (``utils.evaluate``): shared by the
homework's graded tests and the staff's standalone grader (``autograder.staff.challenge``). It ships
in the student bundle (the public tests score with it), so it imports nothing of ``staff/``."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from utils.evaluate import evaluate


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
    """{"ap": {setting: AP}, "images": n, "faces": {setting: n}} of one split's predictions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # missing images count as no detections
        result = evaluate(as_numpy(predictions), Path(ground_truth))
    return {"ap": {k: float(v) for k, v in result.ap.items()}, "images": images,
            "faces": dict(result.num_faces)}


def ap_text(scores: dict, what: str = "hidden pictures") -> str:
    ap = scores["ap"]
    return (f"AP easy / medium / hard {ap.get('easy', 0):.3f} / {ap.get('medium', 0):.3f} / "
            f"{ap.get('hard', 0):.3f} on {scores['images']} {what}")
