"""Graded unit of the RetinaFace homework, Part 8 (``6_testing_finetuning.ipynb``): ``postprocess``,
the test-time pipeline of one image (face scores, threshold, top-k, decode, the student's NMS,
keep-top-k, pixels). Inputs are RetinaFace-like raw outputs: the anchors around a few faces
regress to them (with noise) and score high, the rest score low, so NMS has real clusters to
resolve.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from autograder.retinaface.library_ops import NMS_OPS
from autograder.units import Case, ScoringSide, Unit
from detector.retinaface.config import cfg_mnet

oracles = ScoringSide("autograder.retinaface.oracles")  # builds inputs; never imported by the worker

TESTING_NB = "6_testing_finetuning.ipynb"
VARIANCES = (0.1, 0.2)
DEFAULTS = dict(conf_thresh=0.02, nms_thresh=0.4, top_k=5000, keep_top_k=750)
THRESHOLD_MARGIN = 2e-3   # no score lies this close to conf_thresh, so float32 rounding cannot move a row


def _point_form(priors: torch.Tensor) -> torch.Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def raw_outputs(image_size: tuple[int, int], faces_px, seed: int, dtype: torch.dtype = torch.float32,
                landmarks: bool = True, **options) -> dict:
    """Raw outputs for one input of ``image_size`` (H, W) pixels and cfg_mnet's anchors.

    Anchors overlapping a face by IoU > 0.2 regress to a jittered copy of it and get a face logit
    that grows with the IoU; every other anchor predicts noise with a low face logit. ``options``
    override the thresholds and counts of ``DEFAULTS``.
    """
    g = torch.Generator().manual_seed(seed)
    height, width = image_size
    priors = oracles.prior_boxes(cfg_mnet, (height, width)).double()
    num_priors = len(priors)
    loc = torch.randn(num_priors, 4, generator=g, dtype=torch.float64) * 0.5
    logits = torch.randn(num_priors, 2, generator=g, dtype=torch.float64)
    logits[:, 1] -= 4.0                                                     # mostly background
    faces = torch.tensor(faces_px, dtype=torch.float64).reshape(-1, 4) / torch.tensor(
        [width, height, width, height], dtype=torch.float64)
    if len(faces):
        iou, face = box_iou(faces, _point_form(priors)).max(dim=0)            # [P] best face per anchor
        near = torch.nonzero(iou > 0.2).squeeze(1)
        jitter = 1 + 0.08 * torch.randn(len(near), 4, generator=g, dtype=torch.float64)
        sides = (faces[face[near], 2:] - faces[face[near], :2]).repeat(1, 2)
        boxes = faces[face[near]] + (jitter - 1) * sides
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1e-3)
        loc[near] = oracles.encode_boxes(boxes, priors[near], VARIANCES)
        logits[near, 1] += 2.0 + 8.0 * iou[near]
    # Keep every score clear of conf_thresh: a row on the boundary would be a coin flip in float32.
    conf_thresh = options.get("conf_thresh", DEFAULTS["conf_thresh"])
    scores = logits.softmax(dim=1)[:, 1]
    close = (scores - conf_thresh).abs() < THRESHOLD_MARGIN
    logits[close, 1] += 0.5
    landm = torch.randn(num_priors, 10, generator=g, dtype=torch.float64) * 0.5
    return {"loc": loc.to(dtype), "conf": logits.to(dtype), "landm": landm.to(dtype) if landmarks else None,
            "priors": priors.to(dtype), "image_size": (height, width), "variances": VARIANCES,
            **DEFAULTS, **options}


def _call_postprocess(ns, x, device):
    return ns.postprocess(x["loc"], x["conf"], x["landm"], x["priors"], x["image_size"],
                          variances=x["variances"], conf_thresh=x["conf_thresh"],
                          nms_thresh=x["nms_thresh"], top_k=x["top_k"], keep_top_k=x["keep_top_k"])


THREE_FACES = [[10.0, 8.0, 40.0, 44.0], [52.0, 20.0, 70.0, 42.0], [70.0, 30.0, 92.0, 58.0]]
PIPELINE = "three faces on a 64 x 96 input"
TOP_K = "top_k = 20: only the 20 best candidates reach NMS"
KEEP_TOP_K = "keep_top_k = 3: NMS's 3 best are kept"
NO_LANDMARKS = "landm = None (a model without landmarks)"
NO_CANDIDATES = "no score above conf_thresh"
POSTPROCESS_CASES = (
    Case(PIPELINE, lambda d: raw_outputs((64, 96), THREE_FACES, seed=90)),
    Case("nms_thresh 0.6 and conf_thresh 0.3", lambda d: raw_outputs(
        (64, 96), THREE_FACES, seed=91, nms_thresh=0.6, conf_thresh=0.3)),
    Case(TOP_K, lambda d: raw_outputs((64, 96), THREE_FACES, seed=92, top_k=20)),
    Case(KEEP_TOP_K, lambda d: raw_outputs((64, 96), THREE_FACES, seed=93, keep_top_k=3)),
    Case(NO_LANDMARKS, lambda d: raw_outputs((64, 96), THREE_FACES, seed=94, landmarks=False)),
    Case(NO_CANDIDATES, lambda d: raw_outputs((32, 32), [], seed=95, conf_thresh=0.999)),
    Case("twelve faces on a 160 x 128 input (float64)", lambda d: raw_outputs(
        (160, 128), [[8 + 30 * (i % 4), 6 + 36 * (i // 4), 30 + 30 * (i % 4) + i, 34 + 36 * (i // 4)]
                     for i in range(12)], seed=96, dtype=torch.float64), public=False),
)
PIPELINE_CASES = (PIPELINE, "nms_thresh 0.6 and conf_thresh 0.3")
COUNT_CASES = (TOP_K, KEEP_TOP_K)

UNITS = (
    Unit("postprocess", TESTING_NB, _call_postprocess, POSTPROCESS_CASES,
         depends=("decode", "decode_landm", "nms"), forbidden=NMS_OPS),
)
