"""The final project's one graded unit, ``challenge``: the uploaded detector on a set of pictures.

The unit is the answer cell ``challenge`` of ``1_final_project.ipynb`` (the student's choice of
detector), but what it runs is the upload beside the notebook: ``challenge.pt`` and the chosen
homework's notebooks in ``<model>/``, as ``python -m utils.challenge pack`` writes them and
``autograder.submissions.stage`` keeps them. The grading worker (confined, one CPU thread, the
unit's own time limit ``TIMEOUT`` for everything) checks the file with ``utils.challenge.validate``
(it builds the student's model from their notebooks), then detects on every picture of the case with
the student's post-processing (``detect_all``) and returns ``{split: {event: {name: [K, 5] (x, y, w,
h, score)}}}``. Only pictures reach the worker; the scoring side (``checks``) scores them with
``utils.evaluate`` and checks the file again where student code cannot reach
(``utils.published_weights``).

Cases:
- ``public``: ``PUBLIC_IMAGES`` pictures drawn by ``data.synthetic`` like the validation split, from a
  public seed (its ground truth is public too): what the notebook's check cell and the student
  bundle run.
- the hidden test set: the two hidden splits (``similar``, ``shifted``), built on the scoring side from the
  staff's secret seed (``autograder.staff.hidden_set.hidden_case``; ``autograder/staff/`` never ships
  in a student bundle nor is in the worker's view, so the seed never reaches either).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from autograder.units import Case, ScoringSide, Unit

NOTEBOOK = "1_final_project.ipynb"
UPLOAD = "challenge.pt"
PUBLIC_IMAGES = 20        # drawn like the validation split (640 px), from PUBLIC_SEED
PUBLIC_SEED = 20_240_611  # public: the check cell and the student bundle render the same pictures
PUBLIC_SPLIT = "public"
# One core, everything included: checking the file, building the model, the 20 public and the
# 300 hidden pictures (a lite detector needs 25-120 s; README "Final project").
TIMEOUT = 180.0

_staff = ScoringSide("autograder.staff.hidden_set")


def public_case(workdir: Path) -> dict:
    """The public pictures (``pictures/public/<event>/*.jpg``) and their ground truth."""
    from data.synthetic import generate_split, write_ground_truth

    rendered = Path(workdir) / "rendered"
    results = generate_split(rendered, "val", PUBLIC_IMAGES, 640, PUBLIC_SEED)
    write_ground_truth(results, rendered / "val" / "ground_truth")
    pictures = Path(workdir) / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    shutil.copytree(rendered / "val" / "images", pictures / PUBLIC_SPLIT)
    return {"pictures": str(pictures), "ground_truth": str(rendered / "val" / "ground_truth")}


def upload_folder(ns) -> Path:
    """The folder holding the upload: the graded notebook's folder (the worker loads it from the
    staged submission), or the live notebook's ``SUBMISSION_DIR`` (its check cell)."""
    path = getattr(ns, "__file__", None)
    if path and (Path(path).parent / UPLOAD).is_file():
        return Path(path).parent
    try:
        folder = getattr(ns, "SUBMISSION_DIR")
    except AttributeError:
        folder = None
    if folder is not None and (Path(folder) / UPLOAD).is_file():
        return Path(folder)
    raise FileNotFoundError(f"no {UPLOAD} beside the notebook: pack your detector with python -m utils.challenge "
                            f"pack --model M --weights W --out DIR (the notebook's last section) and upload "
                            f"DIR's {UPLOAD} and <model>/ folder with this notebook")


def detect_all(challenge, pictures: Path) -> dict:
    """``{split: {event: {name: [K, 5] (x, y, w, h, score)}}}``: the upload's detector (``challenge``,
    a validated ``utils.challenge.Challenge``) on every ``<split>/<event>/*.jpg`` of ``pictures``."""
    import torch

    from data.widerface import load_image
    from utils.detectors import load_detector

    detector = load_detector(challenge.model, challenge.load("cpu"), challenge.cfg, challenge.impl)
    predictions: dict = {}
    with torch.inference_mode():
        for split in sorted(p for p in Path(pictures).iterdir() if p.is_dir()):
            out = predictions.setdefault(split.name, {})
            for path in sorted(split.rglob("*.jpg")):
                found = detector.detect([load_image(path)])[0]
                rows = torch.as_tensor(found.wider_rows(), dtype=torch.float64).reshape(-1, 5)
                out.setdefault(path.parent.name, {})[path.stem] = rows.clone()
    return predictions


def detect_upload(ns, x, dev) -> dict:
    """``{split: {event: {name: [K, 5]}}}``: the upload's detector on every picture of the case
    (the upload must hold the detector the answer cell ``choose_detector`` chooses)."""
    from utils.challenge import ChallengeError, validate

    chosen = ns.choose_detector()[0]                     # the answer cell: the detector the notebook trains
    folder = upload_folder(ns)
    try:
        challenge = validate(folder / UPLOAD)            # one line naming what is wrong with the file
    except ChallengeError as err:                        # said without the grader's folder
        raise ValueError(str(err).replace(f"{folder}/", "")) from None
    if challenge.model != chosen:
        raise ValueError(f"{UPLOAD} holds a {challenge.model} detector but choose_detector() chooses "
                         f"{chosen!r}: pack the detector this notebook trains")
    return detect_all(challenge, Path(x["pictures"]))


CASES = (
    Case(PUBLIC_SPLIT, public_case, reference=False),
    Case("hidden test set", lambda d: _staff.hidden_case(d), public=False, reference=False),
)

UNITS = (
    Unit("challenge", NOTEBOOK, detect_upload, CASES, same_device=False, timeout=TIMEOUT),
)
