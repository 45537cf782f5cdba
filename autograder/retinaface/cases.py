"""Graded units of the RetinaFace homework: where each answer cell lives, how it is called, and the
deterministic inputs it is run on, in notebook order (Parts 1/3, 7 and 8 are in ``cases_data.py``,
``cases_loss.py`` and ``cases_testing.py``; the optional cascade part in ``cases_cascade.py``). The
checks and points are in ``test_retinaface*.py``."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from autograder.retinaface import cases_cascade, cases_data, cases_loss, cases_testing
from autograder.retinaface.library_ops import BOX_IOU_OPS, NMS_OPS
from autograder.retinaface.inputs import (clustered_dets, random_anchors, random_boxes, random_faces,
                                          random_faces_px, random_landmarks, random_offsets)
from autograder.modules import MODEL_DTYPE, as_module, parameter_shapes, run_deterministic
from autograder.units import Case, ScoringSide, Unit
from detector.retinaface.config import get_config

oracles = ScoringSide("autograder.retinaface.oracles")  # builds inputs; never imported by the worker

MODEL_NB = "2_model.ipynb"
ANCHORS_NB = "3_anchors.ipynb"
MATCHING_NB = "4_matching_nms.ipynb"

NMS_THRESHOLDS = (0.3, 0.5, 0.7)
NMS_SEEDS = (0, 1, 2, 3)


# -- Parts 5 and 6: pairs of box sets, detections -------------------------------------------------
def _pair(a: torch.Tensor, b: torch.Tensor, _dir: Path) -> dict:
    return {"box_a": a, "box_b": b}


def _known_pair(_dir: Path) -> dict:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 20.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0],
                      [10.0, 0.0, 20.0, 10.0]])  # the last one only touches a[0] along an edge
    return {"box_a": a, "box_b": b}


def _special_pair(_dir: Path) -> dict:
    """Identical boxes, nested boxes, zero-width and zero-height boxes against normal ones."""
    a = torch.tensor([[10.0, 10.0, 30.0, 40.0], [0.0, 0.0, 50.0, 50.0], [5.0, 5.0, 5.0, 25.0],
                      [5.0, 5.0, 25.0, 5.0]])
    b = torch.tensor([[10.0, 10.0, 30.0, 40.0], [20.0, 20.0, 25.0, 25.0], [0.0, 0.0, 20.0, 20.0]])
    return {"box_a": a, "box_b": b}


def _dets(dets: torch.Tensor, thresh: float, _dir: Path) -> dict:
    return {"dets": dets, "thresh": thresh}


def _known_dets(_dir: Path) -> dict:
    dets = torch.tensor([[10.0, 10.0, 50.0, 50.0, 0.95], [12.0, 12.0, 52.0, 52.0, 0.90],
                         [8.0, 9.0, 49.0, 51.0, 0.60], [100.0, 100.0, 140.0, 150.0, 0.80]])
    return {"dets": dets, "thresh": 0.4}


def _special_dets(_dir: Path) -> dict:
    """Identical boxes with identical scores, a zero-area box twice, and one box on its own."""
    dets = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.5], [0.0, 0.0, 10.0, 10.0, 0.5],
                         [0.0, 0.0, 10.0, 10.0, 0.5], [30.0, 30.0, 30.0, 40.0, 0.9],
                         [30.0, 30.0, 30.0, 40.0, 0.8], [60.0, 60.0, 70.0, 70.0, 0.7]])
    return {"dets": dets, "thresh": 0.5}


# -- cases ---------------------------------------------------------------------------------------
BOX_PAIR_CASES = (
    Case("known boxes", _known_pair),
    Case("identical, nested and zero-area boxes", _special_pair),
    Case("random 7 x 5 boxes", lambda d: _pair(random_boxes(7, 1), random_boxes(5, 2), d)),
    Case("random 1 x 30 boxes", lambda d: _pair(random_boxes(1, 3), random_boxes(30, 4), d)),
    Case("random 40 x 60 boxes (float64)",
         lambda d: _pair(random_boxes(40, 5, torch.float64), random_boxes(60, 6, torch.float64), d),
         public=False),
    Case("empty box_a (0 x 5)", lambda d: _pair(torch.zeros(0, 4), random_boxes(5, 7), d)),
    Case("empty box_b (3 x 0)", lambda d: _pair(random_boxes(3, 8), torch.zeros(0, 4), d)),
)
RANDOM_PAIR_CASES = ("random 7 x 5 boxes", "random 1 x 30 boxes")
HIDDEN_PAIR_CASES = ("random 40 x 60 boxes (float64)",)
EMPTY_PAIR_CASES = ("empty box_a (0 x 5)", "empty box_b (3 x 0)")

NMS_RANDOM_CASES = tuple(
    Case(f"{n} clustered detections, seed {seed}, thresh {t}",
         lambda d, n=n, seed=seed, t=t: _dets(clustered_dets(n, seed), t, d),
         public=seed < 2)
    for seed, n in zip(NMS_SEEDS, (20, 60, 200, 500)) for t in NMS_THRESHOLDS)
NMS_TIE_CASES = tuple(
    Case(f"80 detections with tied scores, seed {seed}",
         lambda d, seed=seed: _dets(clustered_dets(80, 10 + seed, ties=True), 0.5, d))
    for seed in range(2))
NMS_CASES = (
    Case("three duplicates around one face and one other face", _known_dets),
    *NMS_RANDOM_CASES,
    *NMS_TIE_CASES,
    Case("identical and zero-area boxes", _special_dets),
    Case("thresh 0: any overlap suppresses", lambda d: _dets(clustered_dets(50, 20), 0.0, d)),
    Case("thresh 1: nothing is suppressed", lambda d: _dets(clustered_dets(50, 21), 1.0, d)),
    Case("no detections", lambda d: _dets(torch.zeros(0, 5), 0.5, d)),
)


# -- Part 2: the heads and the model -------------------------------------------------------------
def _run_head(class_name: str):
    def call(ns, x, device):
        head = as_module(getattr(ns, class_name)(x["inchannels"], x["num_anchors"]),
                         f"{class_name}({x['inchannels']}, {x['num_anchors']})")
        if "features" not in x:
            return parameter_shapes(head)
        return run_deterministic(head, x["features"], device)
    return call


def _run_retinaface(ns, x, device):
    model = as_module(ns.RetinaFace(get_config(x["backbone"])), "RetinaFace(cfg)")
    return parameter_shapes(model) if "image" not in x else run_deterministic(model, x["image"], device)


def _head_inputs(batch: int, channels: int, height: int, width: int, anchors: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"inchannels": channels, "num_anchors": anchors,
            "features": torch.randn(batch, channels, height, width, generator=g, dtype=MODEL_DTYPE)}


def _image_inputs(batch: int, height: int, width: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"backbone": "mobilenet0.25",
            "image": torch.randn(batch, 3, height, width, generator=g, dtype=MODEL_DTYPE)}


HEAD_NAMES_CASE = "parameter names (16 channels, 2 anchors)"
HEAD_FORWARD_CASES = (
    Case("[2, 16, 3, 5] features, 2 anchors", lambda d: _head_inputs(2, 16, 3, 5, 2, 30)),
    Case("[1, 8, 4, 4] features, 3 anchors", lambda d: _head_inputs(1, 8, 4, 4, 3, 31)),
    Case("[3, 32, 6, 7] features, 2 anchors", lambda d: _head_inputs(3, 32, 6, 7, 2, 32), public=False),
)
HEAD_CASES = (Case(HEAD_NAMES_CASE, lambda d: {"inchannels": 16, "num_anchors": 2}), *HEAD_FORWARD_CASES)

RETINAFACE_NAMES_CASE = "parameter names, mobilenet0.25"
RETINAFACE_NAME_CASES = (
    Case(RETINAFACE_NAMES_CASE, lambda d: {"backbone": "mobilenet0.25"}),
    Case("parameter names, resnet50", lambda d: {"backbone": "resnet50"}),
)
RETINAFACE_FORWARD_CASES = (
    Case("mobilenet0.25, 1 x 3 x 48 x 80 image", lambda d: _image_inputs(1, 48, 80, 40)),
    Case("mobilenet0.25, 2 x 3 x 33 x 47 image", lambda d: _image_inputs(2, 33, 47, 41), public=False),
)


# -- Part 4: prior boxes --------------------------------------------------------------------------
def _prior_inputs(height: int, width: int, backbone: str = "mobilenet0.25", clip: bool = False) -> dict:
    return {"cfg": get_config(backbone, clip=clip), "image_size": (height, width)}


PRIOR_CASES = (
    Case("640 x 640", lambda d: _prior_inputs(640, 640), reference=False),
    Case("480 x 640 (H x W)", lambda d: _prior_inputs(480, 640), reference=False),
    Case("75 x 101 (odd sizes: ceil)", lambda d: _prior_inputs(75, 101)),
    Case("8 x 8 (one cell per level)", lambda d: _prior_inputs(8, 8)),
    Case("75 x 101, clip=True", lambda d: _prior_inputs(75, 101, clip=True)),
    Case("300 x 180, clip=True", lambda d: _prior_inputs(300, 180, clip=True), public=False),
    Case("33 x 47, cfg_re50", lambda d: _prior_inputs(33, 47, "resnet50"), public=False),
)
PRIOR_SIZE_CASES = ("480 x 640 (H x W)", "75 x 101 (odd sizes: ceil)", "8 x 8 (one cell per level)")


# -- Part 5: encoding boxes and landmarks against anchors -----------------------------------------
VARIANCES = (0.1, 0.2)        # cfg['variance']
OTHER_VARIANCES = (0.2, 0.5)  # catches variances written into the code


# unit: (its first argument's name, random first argument, random output, the unit's inverse)
_CODING = {
    "encode": ("matched", random_faces, random_offsets(4), lambda *a: oracles.decode_boxes(*a)),
    "decode": ("loc", random_offsets(4), random_faces, lambda *a: oracles.encode_boxes(*a)),
    "encode_landm": ("matched", random_landmarks, random_offsets(10), lambda *a: oracles.decode_landmarks(*a)),
    "decode_landm": ("pre", random_offsets(10), random_landmarks, lambda *a: oracles.encode_landmarks(*a)),
}
# Hand-made inputs whose answers the tests state by hand. Prior 0: centre (0.5, 0.5), 0.2 x 0.4.
KNOWN_PRIORS = ((0.5, 0.5, 0.2, 0.4), (0.25, 0.75, 0.1, 0.1))
KNOWN_BOXES = ((0.4, 0.3, 0.8, 0.7), (0.2, 0.7, 0.3, 0.8))
KNOWN_BOX_TARGETS = ((5.0, 0.0, 5 * math.log(2), 0.0), (0.0, 0.0, 0.0, 0.0))
KNOWN_LANDMARKS = ((0.52, 0.46, 0.5, 0.5, 0.48, 0.54, 0.6, 0.5, 0.5, 0.3),
                   (0.25, 0.75, 0.26, 0.74, 0.24, 0.76, 0.25, 0.8, 0.3, 0.75))
KNOWN_LANDMARK_TARGETS = ((1.0, -1.0, 0.0, 0.0, -1.0, 1.0, 5.0, 0.0, 0.0, -5.0),
                          (0.0, 0.0, 1.0, -1.0, -1.0, 1.0, 0.0, 5.0, 5.0, 0.0))
_KNOWN_INPUTS = {"encode": KNOWN_BOXES, "decode": KNOWN_BOX_TARGETS,
                 "encode_landm": KNOWN_LANDMARKS, "decode_landm": KNOWN_LANDMARK_TARGETS}


def _coding_inputs(unit: str, n: int, seed: int, dtype: torch.dtype = torch.float32,
                   variances=VARIANCES) -> dict:
    name, make, _, _ = _CODING[unit]
    g = torch.Generator().manual_seed(seed)
    priors = random_anchors(n, g, dtype)
    return {name: make(n, g, dtype), "priors": priors, "variances": list(variances)}


def _round_trip_inputs(unit: str, n: int, seed: int) -> dict:
    """The unit's inputs made by its inverse (the definition) from random ``expected`` outputs."""
    name, _, make_output, inverse = _CODING[unit]
    g = torch.Generator().manual_seed(seed)
    priors = random_anchors(n, g, torch.float32)
    expected = make_output(n, g, torch.float32)
    return {name: inverse(expected, priors, VARIANCES), "priors": priors, "variances": list(VARIANCES),
            "expected": expected}


def _known_coding_inputs(unit: str) -> dict:
    return {_CODING[unit][0]: torch.tensor(_KNOWN_INPUTS[unit]), "priors": torch.tensor(KNOWN_PRIORS),
            "variances": list(VARIANCES)}


CODING_KNOWN_CASE = "known values"
CODING_ROUND_TRIP_CASE = "round trip through the definition's inverse"
CODING_PUBLIC_CASES = ("random 50 anchors", "variances (0.2, 0.5)", "no anchors")
CODING_HIDDEN_CASES = ("random 300 anchors (float64)",)


def coding_cases(unit: str) -> tuple[Case, ...]:
    return (
        Case(CODING_KNOWN_CASE, lambda d: _known_coding_inputs(unit)),
        Case("random 50 anchors", lambda d: _coding_inputs(unit, 50, 50)),
        Case("random 300 anchors (float64)", lambda d: _coding_inputs(unit, 300, 51, torch.float64),
             public=False),
        Case("variances (0.2, 0.5)", lambda d: _coding_inputs(unit, 20, 52, variances=OTHER_VARIANCES)),
        Case("no anchors", lambda d: _coding_inputs(unit, 0, 53)),
        Case(CODING_ROUND_TRIP_CASE, lambda d: _round_trip_inputs(unit, 40, 54)),
    )


def _run_coding(unit: str):
    name = _CODING[unit][0]
    return lambda ns, x, device: getattr(ns, unit)(x[name], x["priors"], x["variances"])


# -- Part 5: matching anchors to faces ------------------------------------------------------------
MATCH_IMAGE = 64                      # pixels; cfg_mnet gives 168 anchors on a 64 x 64 image
OVERLAP_THRESH = 0.35                 # cfg['overlap_thresh']
FORCE_MIN_IOU = 0.2                   # cfg['force_match_min_iou']
NO_FORCING = 1.5                      # a force_min_iou above any IoU turns forcing off
ABSENT = -1.0                         # landmark flag and coordinates of a face without landmarks


def _match_inputs(faces_px, image: int = MATCH_IMAGE, flags=None, threshold: float = OVERLAP_THRESH,
                  force_min_iou: float = FORCE_MIN_IOU, dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> dict:
    """One image's faces (pixels, (x1, y1, x2, y2)) against cfg_mnet's anchors for an image x image
    input; landmarks are random points inside each face (all -1 where the flag is -1)."""
    g = torch.Generator().manual_seed(seed)
    faces = torch.tensor(faces_px, dtype=torch.float64).reshape(-1, 4)
    flags = torch.ones(len(faces), dtype=torch.float64) if flags is None else torch.tensor(flags).double()
    u = torch.rand(len(faces), 5, 2, generator=g, dtype=torch.float64)
    landmarks = (faces[:, None, :2] + u * (faces[:, None, 2:] - faces[:, None, :2])).reshape(-1, 10)
    landmarks[flags < 0] = ABSENT * image
    return {"threshold": threshold, "truths": (faces / image).to(dtype),
            "priors": oracles.prior_boxes(get_config("mobilenet0.25"), (image, image)).to(dtype),
            "variances": list(VARIANCES), "labels": flags.float(), "landms": (landmarks / image).to(dtype),
            "force_min_iou": force_min_iou}


MATCH_SEPARATE = "three separate faces"
MATCH_SHARED = "two overlapping faces pick the same anchor (the later face gets it)"
MATCH_SMALL = "small faces: one forces its best anchor (IoU < threshold), one is below force_min_iou"
MATCH_NO_LANDMARKS = "a face without landmarks (label -1)"
MATCH_AT_THRESHOLD = "IoU exactly at the threshold, forcing off"
MATCH_EMPTY = "no faces"
MATCH_CASES = (
    Case(MATCH_SEPARATE, lambda d: _match_inputs(
        [[6.3, 7.1, 25.8, 29.4], [35.2, 30.7, 60.1, 58.3], [30.4, 3.2, 44.9, 17.6]], seed=60)),
    # Face 0's best IoU is with anchor 36 (0.94), but face 1 (0.89) forces it; flags tell who won.
    Case(MATCH_SHARED, lambda d: _match_inputs([[12.3, 11.8, 27.6, 28.1], [12.9, 12.4, 28.2, 27.7]],
                                               flags=[1.0, ABSENT], seed=61)),
    # Best IoUs: 0.67; 0.32 (forced, below the threshold); 0.03 (below force_min_iou: left out)
    Case(MATCH_SMALL, lambda d: _match_inputs(
        [[35.2, 30.7, 60.1, 58.3], [45.3, 6.1, 54.4, 15.0], [8.2, 40.5, 11.1, 43.3]], seed=62)),
    Case(MATCH_NO_LANDMARKS, lambda d: _match_inputs([[6.3, 7.1, 25.8, 29.4], [35.2, 30.7, 60.1, 58.3]],
                                                     flags=[1.0, ABSENT], seed=63)),
    # 16 x 8 pixels inside two 16 x 16 anchors: IoU exactly 0.5 in any floating-point format
    Case(MATCH_AT_THRESHOLD, lambda d: _match_inputs([[12.0, 12.0, 28.0, 20.0]], threshold=0.5,
                                                     force_min_iou=NO_FORCING, seed=64)),
    Case(MATCH_EMPTY, lambda d: _match_inputs([], seed=65)),
    Case("12 random faces on a 160 x 160 image", lambda d: _match_inputs(
        random_faces_px(12, 160, 74), image=160, seed=74), public=False),
    Case("6 random faces on a 96 x 96 image (float64)", lambda d: _match_inputs(
        random_faces_px(6, 96, 74), image=96, dtype=torch.float64, seed=75), public=False),
)
MATCH_RANDOM_CASES = ("12 random faces on a 160 x 160 image", "6 random faces on a 96 x 96 image (float64)")


def _run_match(ns, x, device):
    return ns.match(x["threshold"], x["truths"], x["priors"], x["variances"], x["labels"], x["landms"],
                    force_min_iou=x["force_min_iou"])


UNITS = (
    *cases_data.UNITS,
    Unit("bbox_head", MODEL_NB, _run_head("BboxHead"), HEAD_CASES),
    Unit("landmark_head", MODEL_NB, _run_head("LandmarkHead"), HEAD_CASES),
    Unit("retinaface", MODEL_NB, _run_retinaface, RETINAFACE_NAME_CASES + RETINAFACE_FORWARD_CASES,
         depends=("bbox_head", "landmark_head")),
    Unit("prior_box", ANCHORS_NB, lambda ns, x, dev: ns.PriorBox(x["cfg"], x["image_size"]).forward(),
         PRIOR_CASES, same_device=False),
    Unit("intersect", MATCHING_NB, lambda ns, x, dev: ns.intersect(x["box_a"], x["box_b"]),
         BOX_PAIR_CASES, forbidden=BOX_IOU_OPS),
    Unit("jaccard", MATCHING_NB, lambda ns, x, dev: ns.jaccard(x["box_a"], x["box_b"]),
         BOX_PAIR_CASES, depends=("intersect",), forbidden=BOX_IOU_OPS),
    *(Unit(unit, MATCHING_NB, _run_coding(unit), coding_cases(unit))
      for unit in ("encode", "decode", "encode_landm", "decode_landm")),
    Unit("match", MATCHING_NB, _run_match, MATCH_CASES, depends=("jaccard", "encode", "encode_landm")),
    Unit("nms", MATCHING_NB, lambda ns, x, dev: ns.nms(x["dets"], x["thresh"]), NMS_CASES,
         depends=("jaccard",), forbidden=NMS_OPS + BOX_IOU_OPS),
    *cases_loss.UNITS,
    *cases_testing.UNITS,
    *cases_cascade.UNITS,
)
