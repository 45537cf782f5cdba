"""What the final project reports beyond its checks (``autograder.engine.homework_extras``): the
leaderboard of results.json, the AP behind the visible checks, and, for course staff, an upload that
starts from a published checkpoint.

Both read only what grading already computed (``checks``' cached scores and upload state, the
worker's run of the unit), so every view that builds the Report (``pytest autograder/``, Gradescope's
``run_autograder``, class grading) gives the same entries.
"""
from __future__ import annotations

from autograder.challenge.cases import PUBLIC_IMAGES, UPLOAD
from autograder.challenge.checks import (UNIT, cached_scores, published_distances, published_match,
                                         upload_state)
from autograder.challenge.scoring import ap_text

LEADERBOARD_SPLIT = "similar"      # the hidden split whose tests are shown before the due date
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(state: dict) -> int:
    """Learnable values of a state dict: floating-point tensors, BatchNorm statistics left out."""
    return int(sum(v.numel() for k, v in state.items() if v.is_floating_point() and not k.endswith(BN_STATISTICS)))


def _hidden(submission) -> dict | None:
    """The hidden splits' scores; {} for an upload refused or failed; None where no hidden check ran."""
    hidden = cached_scores(submission, "hidden")
    if hidden is None:
        return None
    return hidden if isinstance(hidden, dict) and published_match(submission) is None else {}


def leaderboard(submission) -> list[dict] | None:
    """Gradescope's leaderboard entries (name, value, order): AP on ``LEADERBOARD_SPLIT``, images/s
    and parameters; None where the hidden checks did not run (the student bundle). images/s is
    timed by the grader (not by the worker, which runs student code): every picture of the unit's
    cases over the unit's whole run on one core (checking the file and building the model included).
    A refused or failed upload ranks last (zeros)."""
    hidden = _hidden(submission)
    if hidden is None:
        return None
    ap = hidden.get(LEADERBOARD_SPLIT, {}).get("ap", {})
    run = getattr(submission, "sandbox", None) and submission.sandbox.runs.get(UNIT)
    pictures = PUBLIC_IMAGES + sum(s["images"] for s in hidden.values())
    detected = bool(hidden) and run is not None and run.status == "ok" and all(c.ok for c in run.cases.values())
    speed = pictures / run.seconds if detected and run.seconds > 0 else 0.0
    state = upload_state(submission)
    return [{"name": "AP hard", "value": round(ap.get("hard", 0.0), 4), "order": "desc"},
            {"name": "AP medium", "value": round(ap.get("medium", 0.0), 4), "order": "desc"},
            {"name": "AP easy", "value": round(ap.get("easy", 0.0), 4), "order": "desc"},
            {"name": "images/s", "value": round(speed, 2), "order": "desc"},
            {"name": "parameters", "value": count_parameters(state) if state else 0, "order": "asc"}]


def curves(submission) -> dict | None:
    """The precision-recall curves on ``LEADERBOARD_SPLIT`` ({setting: {"recall", "precision"}}) for
    the class summary's figure; None where the hidden checks did not score."""
    split = (_hidden(submission) or {}).get(LEADERBOARD_SPLIT)
    return split.get("curves") if split else None


def notes(submission) -> list[str]:
    """The AP behind the checks shown before the due date (public pictures, the leaderboard split),
    also when every threshold passed (a passing check prints nothing)."""
    lines = []
    if published_match(submission) is not None:
        return lines
    public, hidden = cached_scores(submission, "public"), _hidden(submission)
    if isinstance(public, dict):
        lines.append(ap_text(public, "public pictures"))
    if hidden and LEADERBOARD_SPLIT in hidden:
        lines.append(ap_text(hidden[LEADERBOARD_SPLIT], f"hidden pictures of split '{LEADERBOARD_SPLIT}'"))
    return lines


def review(submission) -> list[str]:
    """Lines for course staff: an upload whose weights start from a published checkpoint (fine-tuned
    from it; the same weights are refused by the checks). Whether that is allowed is the course's rule."""
    return [f"{UPLOAD}: starts from the published checkpoint {m.describe()} (fine-tuned from it; "
            f"independently trained weights are ~1.2 apart)"
            for m in published_distances(submission) if m.starts_from and not m.same]
