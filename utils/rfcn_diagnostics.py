"""Deterministic Face R-FCN diagnostics (given code of the rfcn experiments notebook, ``4_experiments``):
measurements on one trained model that need no second training run, so no seed spread hides them.

* OHEM vs the sampled minibatch on the same images and the same step: ``compare_selections`` runs the
  notebook's ``proposal_layer`` / ``proposal_target_layer`` / ``ohem_select`` on a fixed batch and
  reports which RoIs each picks (faces, loss, IoU with the nearest face) and how much the two index
  sets overlap (Jaccard), beside the overlap of two sampler draws and of two random subsets;
* what the position-sensitive vote learned: ``vote_shape_scale`` splits the ``[k, k]`` voting
  weights into a shape ``w / sum(w)`` and a scale ``sum(w)``; ``vote_breakdown`` shows, for a few RoIs
  (``probe_rois``: a face, the face shifted, a background box), the per-bin face-minus-background
  margins and the vote they make;
* a test-time switch: ``ScaledDetector`` runs a detector on images resized by a factor and maps the
  boxes back; ``recall_by_size`` counts the faces found, by face size.

Boxes are continuous ``(x1, y1, x2, y2)`` pixels (width ``x2 - x1``, as torchvision and the rfcn
notebooks); RoIs fed to the head are ``[R, 5] (batch index, x1, y1, x2, y2)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, nms, ps_roi_pool

from utils.detectors.rfcn import AnchorCache
from utils.inference import Detections

SIZE_EDGES = (0, 16, 32, 64, 128, math.inf)      # face size sqrt(w * h) bins (pixels) of the tables
IOU_EDGES = (0.0, 0.1, 0.3, 0.5, 1.0 + 1e-6)     # RoI best-IoU bins: easy bg, bg, hard bg, face
BACKGROUND, FACE = 0, 1                          # class channels of the head


# -- OHEM vs sampling ------------------------------------------------------------------------------
def best_iou(boxes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """[N, 4] boxes, [G, 4] faces -> [N] IoU of each box with its nearest face (0 when G = 0)."""
    if len(faces) == 0 or len(boxes) == 0:
        return boxes.new_zeros(len(boxes))
    return box_iou(boxes.float(), faces.float()).max(dim=1).values


def candidate_rows(candidates: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """[N, 4] candidate boxes, [S, 4] boxes copied from them -> [S] int64 row of each in
    ``candidates`` (exact equality; a box present twice takes the next unused copy)."""
    rows = []
    used = torch.zeros(len(candidates), dtype=torch.bool)
    equal = (picked[:, None, :] == candidates[None, :, :]).all(dim=-1).cpu()     # [S, N]
    for s in range(len(picked)):
        free = torch.nonzero(equal[s] & ~used).flatten()
        if len(free) == 0:
            raise ValueError(f"picked box {s} {picked[s].tolist()} is not one of the {len(candidates)} "
                             f"candidates (or is taken more often than it occurs)")
        used[free[0]] = True
        rows.append(int(free[0]))
    return torch.tensor(rows, dtype=torch.long)


def jaccard(a, b) -> float:
    """|A ∩ B| / |A ∪ B| of two collections of indices (1.0 when both are empty)."""
    a, b = set(int(i) for i in a), set(int(i) for i in b)
    return len(a & b) / len(a | b) if a | b else 1.0


def random_jaccard(n: int, a: int, b: int) -> float:
    """Jaccard of two independent uniform random subsets of sizes ``a`` and ``b`` of ``n`` items, from
    the expected intersection ``a * b / n`` (what two selections share by chance alone)."""
    if n == 0 or a + b == 0:
        return 1.0
    common = a * b / n
    return common / (a + b - common)


def per_roi_loss(logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, goals: torch.Tensor,
                 sigma: float = 1.0) -> torch.Tensor:
    """[N, 2] class logits, [N, 4] box deltas, [N] labels (1 face), [N, 4] normalised targets -> [N]
    cross-entropy + (faces only) smooth L1 (beta = 1 / sigma²) summed over the 4 coordinates: the
    loss OHEM ranks RoIs by."""
    cls = F.cross_entropy(logits.float(), labels, reduction="none")
    box = F.smooth_l1_loss(deltas.float(), goals.float(), beta=1.0 / sigma ** 2, reduction="none").sum(dim=1)
    return cls + torch.where(labels > 0, box, torch.zeros_like(box))


@dataclass
class ImageSelection:
    """One image's candidates (the proposals plus its faces, as ``proposal_target_layer`` with
    ``batch_size=None`` orders them) and what each selection took from them.

    labels [N] (1 face), loss [N] (``per_roi_loss``), iou [N] (IoU with the nearest face);
    ohem: [K] candidate rows ``ohem_select`` kept; sampled: one [S] row tensor per sampler seed.
    """

    labels: torch.Tensor
    loss: torch.Tensor
    iou: torch.Tensor
    ohem: torch.Tensor
    sampled: list[torch.Tensor]


def select_rois(hw, model, cfg: dict, images: torch.Tensor, faces: list[torch.Tensor], pre_nms: int,
                post_nms: int, batch: int, seeds=(0, 1, 2)) -> list[ImageSelection]:
    """OHEM's and the sampler's RoIs on one fixed batch.

    hw: ``utils.detectors.rfcn.Homework`` (the notebooks' layers); model: a trained RFCN (eval mode);
    images: [B, 3, H, W] mean-subtracted crops; faces: B tensors [G_b, 4] pixels; pre_nms / post_nms:
    the proposal layer's top-N before / after its NMS; batch: RoIs per image both selections keep;
    seeds: the sampler's generator seeds (one draw each). No gradient, no randomness but the seeds.
    """
    size = tuple(images.shape[-2:])
    out = []
    with torch.no_grad():
        outputs = model(images)
        maps = outputs["cls_maps"]
        anchors = AnchorCache(hw, cfg)(maps.shape[-2], maps.shape[-1], maps.device)
        rois, _ = hw.proposal_layer(outputs["rpn_logits"], outputs["rpn_deltas"], anchors, size, pre_nms,
                                    post_nms, cfg["rpn_nms_thresh"], cfg["rpn_min_size"])
        args = (cfg["roi_fg_fraction"], cfg["roi_fg_iou"], tuple(cfg["roi_bg_iou"]), tuple(cfg["bbox_stds"]))
        for b, gt in enumerate(faces):
            props = rois[rois[:, 0] == b, 1:]
            boxes, labels, goals = hw.proposal_target_layer(props, gt, torch.Generator(), None, *args)
            logits, deltas = model.head(outputs, torch.cat([boxes.new_full((len(boxes), 1), b), boxes], 1))
            ohem = hw.ohem_select(logits, deltas, labels, goals, boxes, batch, cfg["ohem_nms"], cfg["rcnn_sigma"])
            sampled = [candidate_rows(boxes, hw.proposal_target_layer(
                props, gt, torch.Generator().manual_seed(seed), batch, *args)[0]) for seed in seeds]
            out.append(ImageSelection(labels.cpu(), per_roi_loss(logits, deltas, labels, goals,
                                                                 cfg["rcnn_sigma"]).cpu(),
                                      best_iou(boxes, gt).cpu(), ohem.cpu(), sampled))
    return out


def summarise_selections(selections: list[ImageSelection]) -> dict:
    """Pooled over the images: ``candidates`` (mean per image); per set (``"OHEM"``, ``"sampler"``,
    the sampler's numbers averaged over its seeds): ``RoIs`` (mean per image), ``faces`` (fraction
    labelled face), ``loss`` (mean), ``iou`` (mean IoU with the nearest face) and ``iou_bins`` (fraction
    in each ``IOU_EDGES`` bin); ``jaccard`` (OHEM vs sampler, mean over images) per seed;
    ``jaccard_sampler`` (two sampler seeds, every pair); ``jaccard_random`` (two random subsets of
    the same sizes)."""
    def stats(rows_per_image):
        labels = torch.cat([s.labels[r] for s, r in rows_per_image])
        loss = torch.cat([s.loss[r] for s, r in rows_per_image])
        iou = torch.cat([s.iou[r] for s, r in rows_per_image])
        bins = torch.bucketize(iou, torch.tensor(IOU_EDGES[1:-1]), right=True)
        return {"RoIs": len(labels) / len(rows_per_image), "faces": float(labels.float().mean()),
                "loss": float(loss.mean()), "iou": float(iou.mean()),
                "iou_bins": (torch.bincount(bins, minlength=len(IOU_EDGES) - 1).float() / len(bins)).tolist()}

    seeds = len(selections[0].sampled)
    sampler = [stats([(s, s.sampled[k]) for s in selections]) for k in range(seeds)]
    mean_sampler = {key: (np.mean([row[key] for row in sampler], axis=0).tolist() if key == "iou_bins"
                          else float(np.mean([row[key] for row in sampler]))) for key in sampler[0]}
    pairs = [(i, j) for i in range(seeds) for j in range(i + 1, seeds)]
    return {
        "candidates": float(np.mean([len(s.labels) for s in selections])),
        "OHEM": stats([(s, s.ohem) for s in selections]),
        "sampler": mean_sampler,
        "jaccard": [float(np.mean([jaccard(s.ohem, s.sampled[k]) for s in selections])) for k in range(seeds)],
        "jaccard_sampler": [float(np.mean([jaccard(s.sampled[i], s.sampled[j]) for s in selections]))
                            for i, j in pairs],
        "jaccard_random": float(np.mean([random_jaccard(len(s.labels), len(s.ohem), len(s.sampled[0]))
                                         for s in selections])),
    }


# -- what the position-sensitive vote learned -------------------------------------------------------
def vote_shape_scale(weights: torch.Tensor) -> tuple[torch.Tensor, float]:
    """[k, k] voting weights -> (shape [k, k] = w / sum(w), scale = sum(w)); w = scale * shape, and
    R-FCN's plain average is shape 1/k² everywhere with scale 1."""
    scale = float(weights.sum())
    return weights / scale, scale


def probe_rois(faces: torch.Tensor, height: int, width: int, shift: float = 0.5,
               index: int | None = None) -> dict[str, torch.Tensor]:
    """Three [4] boxes for one image of ``height`` x ``width`` with ``faces`` [G >= 1, 4]: ``"face"``
    face ``index`` (None: the largest face); ``"shifted"`` it moved right by ``shift`` of its width (left when it would leave
    the image); ``"background"`` the same size at the first place of a half-box-step raster (rows
    from the top, left to right) inside the image with IoU 0 with every face (absent when none)."""
    sides = ((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])).clamp(min=0)
    face = faces[int(sides.argmax()) if index is None else index].float()
    w, h = float(face[2] - face[0]), float(face[3] - face[1])
    dx = shift * w if face[2] + shift * w <= width else -shift * w
    out = {"face": face, "shifted": face + torch.tensor([dx, 0.0, dx, 0.0])}
    for y in np.arange(0.0, height - h + 1e-6, max(h / 2, 1.0)):
        for x in np.arange(0.0, width - w + 1e-6, max(w / 2, 1.0)):
            box = torch.tensor([x, y, x + w, y + h], dtype=torch.float32)
            if float(box_iou(box[None], faces.float()).max()) == 0.0:
                out["background"] = box
                return out
    return out


def vote_breakdown(model, outputs: dict, rois: torch.Tensor) -> dict[str, torch.Tensor]:
    """The class vote of ``model`` (an RFCN: ``cls_vote`` [k, k], ``k``, ``spatial_scale``) for ``rois``
    [R, 5] (batch index, x1, y1, x2, y2) on ``outputs["cls_maps"]`` [B, 2 k², h, w].

    Returns ``margins`` [R, k, k] (face minus background bin score, pooled as ``model.head`` pools:
    maps padded with one zero row and column), ``weighted`` [R] = sum(w * margins) (the head's logit
    difference), ``average`` [R] = mean(margins) (R-FCN's vote), ``shape_mean`` [R] = sum(shape *
    margins) (so weighted = scale * shape_mean), and the face probabilities ``p_weighted`` /
    ``p_average`` = sigmoid of the two votes."""
    maps = F.pad(outputs["cls_maps"], (0, 1, 0, 1))
    pooled = ps_roi_pool(maps.float(), rois.float(), model.k, model.spatial_scale)       # [R, 2, k, k]
    margins = pooled[:, FACE] - pooled[:, BACKGROUND]
    weights = model.cls_vote.detach().float()
    shape, _ = vote_shape_scale(weights)
    weighted = (margins * weights).sum(dim=(-2, -1))
    average = margins.mean(dim=(-2, -1))
    return {"margins": margins, "weighted": weighted, "average": average,
            "shape_mean": (margins * shape).sum(dim=(-2, -1)),
            "p_weighted": torch.sigmoid(weighted), "p_average": torch.sigmoid(average)}


# -- test-time scale --------------------------------------------------------------------------------
class ScaledDetector:
    """``detect(images)`` of ``detector`` on each uint8 BGR image resized by ``factor`` (bilinear),
    boxes (and landmarks) mapped back to the original pixels."""

    def __init__(self, detector, factor: float) -> None:
        self.detector, self.factor = detector, float(factor)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        resized = [cv2.resize(image, (round(image.shape[1] * self.factor), round(image.shape[0] * self.factor)),
                              interpolation=cv2.INTER_LINEAR) for image in images]
        return [Detections((found.boxes / self.factor).astype(np.float32), found.scores,
                           None if found.landmarks is None else (found.landmarks / self.factor).astype(np.float32))
                for found in self.detector.detect(resized)]


def recall_by_size(detections: dict, dataset, min_score: float = 0.5, iou: float = 0.5,
                   edges=SIZE_EDGES) -> tuple[np.ndarray, np.ndarray]:
    """(faces [bins], found [bins]) per face-size bin ``edges`` (sqrt(w * h) pixels): a face of
    ``dataset`` (``targets[i][:, :4]`` pixels, ``image_id(i)`` the key of ``detections``) is found
    when a detection scoring >= ``min_score`` has IoU >= ``iou`` with it."""
    faces_per_bin = np.zeros(len(edges) - 1, dtype=np.int64)
    found_per_bin = np.zeros(len(edges) - 1, dtype=np.int64)
    for i in range(len(dataset.targets)):
        faces = torch.as_tensor(np.asarray(dataset.targets[i])[:, :4], dtype=torch.float32).reshape(-1, 4)
        if len(faces) == 0:
            continue
        sides = ((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])).clamp(min=0).sqrt().numpy()
        bins = np.digitize(sides, edges[1:-1])
        found = detections[dataset.image_id(i)]
        boxes = torch.as_tensor(found.boxes[found.scores >= min_score], dtype=torch.float32).reshape(-1, 4)
        hit = (box_iou(faces, boxes).max(dim=1).values >= iou).numpy() if len(boxes) else np.zeros(len(faces), bool)
        np.add.at(faces_per_bin, bins, 1)
        np.add.at(found_per_bin, bins, hit.astype(np.int64))
    return faces_per_bin, found_per_bin


def merge_detections(per_scale: list[dict], nms_thresh: float, max_dets: int) -> dict:
    """One image pyramid's detections: for every key, the ``Detections`` of all scales (boxes already
    in original pixels) pooled, then one NMS (IoU > ``nms_thresh``) and the ``max_dets`` best kept."""
    merged = {}
    for key in per_scale[0]:
        boxes = torch.as_tensor(np.concatenate([d[key].boxes for d in per_scale]), dtype=torch.float32).reshape(-1, 4)
        scores = torch.as_tensor(np.concatenate([d[key].scores for d in per_scale]), dtype=torch.float32)
        keep = nms(boxes, scores, nms_thresh)[:max_dets]
        merged[key] = Detections(boxes[keep].numpy(), scores[keep].numpy(), None)
    return merged
