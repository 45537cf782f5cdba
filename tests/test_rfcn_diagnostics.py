"""utils.rfcn_diagnostics (R-FCN notebook 4's deterministic diagnostics): known answers for the set
overlaps, the per-RoI loss, the vote's shape / scale and its breakdown, the probe RoIs, the scaled
detector, the recall by size and the pyramid merge; OHEM vs the sampler on the solutions' layers."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils.inference import Detections
from utils.rfcn_diagnostics import (ImageSelection, ScaledDetector, best_iou, candidate_rows, jaccard,
                                    merge_detections, per_roi_loss, probe_rois, random_jaccard,
                                    recall_by_size, select_rois, summarise_selections, vote_breakdown,
                                    vote_shape_scale)


def test_best_iou_known_answers_and_no_faces():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]])
    faces = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10]])
    assert torch.allclose(best_iou(boxes, faces), torch.tensor([1.0, 1 / 3, 0.0]))
    assert torch.equal(best_iou(boxes, torch.zeros(0, 4)), torch.zeros(3))


def test_candidate_rows_matches_exact_rows_and_takes_duplicates_once_each():
    candidates = torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 1, 1], [4, 4, 5, 5]])
    picked = candidates[[3, 0, 0, 1]]
    assert candidate_rows(candidates, picked).tolist() == [3, 0, 2, 1]
    with pytest.raises(ValueError, match="not one of"):
        candidate_rows(candidates, torch.tensor([[9.0, 9, 9, 9]]))
    with pytest.raises(ValueError):
        candidate_rows(candidates, candidates[[1, 1]])


def test_jaccard_and_its_random_baseline():
    assert jaccard([0, 1, 2], [1, 2, 3]) == 0.5
    assert jaccard([], []) == 1.0 and jaccard([1], []) == 0.0
    assert random_jaccard(10, 10, 10) == 1.0                  # all of n: the same set
    assert math.isclose(random_jaccard(100, 10, 10), 1 / 19)  # 1 shared of 19
    rng = np.random.default_rng(0)                            # against a simulation
    draws = [jaccard(rng.choice(300, 128, replace=False), rng.choice(300, 128, replace=False))
             for _ in range(2000)]
    assert abs(np.mean(draws) - random_jaccard(300, 128, 128)) < 0.01


def test_per_roi_loss_is_cross_entropy_plus_smooth_l1_on_faces_only():
    logits = torch.zeros(3, 2)
    deltas = torch.tensor([[2.0, 0, 0, 0], [0.5, 0, 0, 0], [2.0, 0, 0, 0]])
    labels = torch.tensor([1, 1, 0])
    loss = per_roi_loss(logits, deltas, labels, torch.zeros(3, 4), sigma=1.0)
    # |x| >= 1: |x| - 0.5; |x| < 1: 0.5 x²; backgrounds get no box term
    assert torch.allclose(loss, math.log(2) + torch.tensor([1.5, 0.125, 0.0]))
    assert torch.allclose(per_roi_loss(logits, deltas, labels, torch.zeros(3, 4), sigma=3.0)[1],
                          torch.tensor(math.log(2) + 0.5 - 0.5 / 9))


def test_vote_shape_scale_splits_the_weights():
    shape, scale = vote_shape_scale(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert scale == 10.0
    assert torch.allclose(shape, torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    shape, scale = vote_shape_scale(torch.full((3, 3), 1 / 9))
    assert math.isclose(scale, 1.0, rel_tol=1e-6) and torch.allclose(shape, torch.full((3, 3), 1 / 9))


def test_vote_breakdown_known_margins_and_votes():
    k = 2
    face = torch.tensor([[1.0, 2.0], [3.0, 4.0]])       # face score of bin (i, j)
    bg = torch.tensor([[0.5, 0.5], [0.0, 6.0]])
    maps = torch.zeros(1, 2 * k * k, 8, 8)               # channel c * k² + i * k + j, constant maps
    for i in range(k):
        for j in range(k):
            maps[0, 0 * k * k + i * k + j] = bg[i, j]
            maps[0, 1 * k * k + i * k + j] = face[i, j]
    weights = torch.tensor([[0.4, 0.1], [0.2, 0.3]])
    model = SimpleNamespace(k=k, spatial_scale=1.0, cls_vote=weights)
    out = vote_breakdown(model, {"cls_maps": maps}, torch.tensor([[0.0, 1, 1, 5, 5]]))
    margins = face - bg
    assert torch.allclose(out["margins"][0], margins)
    assert torch.allclose(out["weighted"], (weights * margins).sum()[None])          # 0.2+0.15+0.6-0.6
    assert torch.allclose(out["average"], margins.mean()[None])
    assert torch.allclose(out["shape_mean"] * weights.sum(), out["weighted"])
    assert torch.allclose(out["p_weighted"], torch.sigmoid(torch.tensor([0.35])))


def test_probe_rois_face_shifted_and_background():
    faces = torch.tensor([[10.0, 10, 30, 30], [40, 0, 80, 40]])
    probes = probe_rois(faces, 100, 100)
    assert probes["face"].tolist() == [40, 0, 80, 40]                 # the largest face
    assert probes["shifted"].tolist() == [60, 0, 100, 40]
    assert float(best_iou(probes["background"][None], faces)) == 0.0
    assert probes["background"].tolist() == [0, 40, 40, 80]          # first free raster place
    assert probe_rois(faces, 100, 100, index=0)["shifted"].tolist() == [20, 10, 40, 30]
    edge = probe_rois(torch.tensor([[70.0, 0, 100, 30]]), 100, 100)   # no room on the right
    assert edge["shifted"].tolist() == [55, 0, 85, 30]
    assert "background" not in probe_rois(torch.tensor([[0.0, 0, 100, 100]]), 100, 100)


class _WholeImage:
    """A fake detector: one box covering the image it is given, and the sizes it saw."""

    def __init__(self):
        self.seen = []

    def detect(self, images):
        self.seen += [image.shape for image in images]
        return [Detections(np.array([[0, 0, im.shape[1], im.shape[0]]], np.float32), np.ones(1, np.float32), None)
                for im in images]


def test_scaled_detector_resizes_and_maps_boxes_back():
    inner = _WholeImage()
    (found,) = ScaledDetector(inner, 2.0).detect([np.zeros((30, 50, 3), np.uint8)])
    assert inner.seen == [(60, 100, 3)]
    assert found.boxes.tolist() == [[0, 0, 50, 30]] and found.landmarks is None


def test_recall_by_size_counts_faces_and_hits_per_bin():
    dataset = SimpleNamespace(targets=[np.array([[0, 0, 10, 10], [20, 20, 60, 60.0]]), np.zeros((0, 15))],
                              image_id=lambda i: ("e", str(i)))
    detections = {("e", "0"): Detections(np.array([[0, 0, 10, 10], [20, 20, 60, 60]], np.float32),
                                         np.array([0.9, 0.3], np.float32), None),
                  ("e", "1"): Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None)}
    faces, found = recall_by_size(detections, dataset, min_score=0.5, edges=(0, 16, math.inf))
    assert faces.tolist() == [1, 1] and found.tolist() == [1, 0]      # the 40 px face scores too low
    faces, found = recall_by_size(detections, dataset, min_score=0.2, edges=(0, 16, math.inf))
    assert found.tolist() == [1, 1]


def test_merge_detections_pools_scales_and_suppresses_duplicates():
    one = {"a": Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.6], np.float32), None)}
    two = {"a": Detections(np.array([[0, 0, 10, 11], [50, 50, 60, 60]], np.float32),
                           np.array([0.9, 0.5], np.float32), None)}
    merged = merge_detections([one, two], 0.3, 10)["a"]
    assert merged.scores.tolist() == pytest.approx([0.9, 0.5])
    assert merged.boxes.tolist() == [[0, 0, 10, 11], [50, 50, 60, 60]]
    assert len(merge_detections([one, two], 0.3, 1)["a"]) == 1


def test_summarise_selections_known_answer():
    labels = torch.tensor([1, 0, 0, 0])
    sel = ImageSelection(labels=labels, loss=torch.tensor([4.0, 3.0, 2.0, 1.0]),
                         iou=torch.tensor([0.8, 0.4, 0.2, 0.0]), ohem=torch.tensor([0, 1]),
                         sampled=[torch.tensor([0, 2]), torch.tensor([0, 3])])
    s = summarise_selections([sel])
    assert s["candidates"] == 4
    assert s["OHEM"] == {"RoIs": 2, "faces": 0.5, "loss": 3.5, "iou": pytest.approx(0.6),
                         "iou_bins": [0.0, 0.0, 0.5, 0.5]}
    assert s["sampler"]["loss"] == 2.75 and s["sampler"]["faces"] == 0.5      # mean of the two draws
    assert s["sampler"]["iou_bins"] == [0.25, 0.25, 0.0, 0.5]
    assert s["jaccard"] == [1 / 3, 1 / 3] and s["jaccard_sampler"] == [1 / 3]
    assert s["jaccard_random"] == pytest.approx(1 / 3)   # 2 * 2 / 4 = 1 shared of 3


def test_select_rois_on_the_solutions_layers():
    from detector.rfcn.config import get_config
    from utils.detectors import load_code, load_model
    from utils.detectors.rfcn import NOTEBOOKS, load_homework

    torch.manual_seed(0)
    cfg = get_config("resnet18-lite", image_size=96)
    model = load_model("rfcn", cfg).eval()
    hw = load_homework(load_code("rfcn", "solutions", NOTEBOOKS))
    images = torch.randn(2, 3, 96, 96)
    faces = [torch.tensor([[10.0, 10, 40, 44], [50, 20, 80, 50]]), torch.tensor([[30.0, 30, 70, 70]])]
    selections = select_rois(hw, model, cfg, images, faces, 2000, 100, 24, seeds=(0, 1))
    for sel, gt in zip(selections, faces):
        assert len(sel.labels) >= len(gt)                                   # the faces join the proposals
        assert len(sel.ohem) <= 24 and len(set(sel.ohem.tolist())) == len(sel.ohem)
        assert int(sel.ohem[0]) == int(sel.loss.argmax())                 # hardest first
        assert torch.equal(sel.labels, (sel.iou >= cfg["roi_fg_iou"]).long())
        for rows in sel.sampled:
            assert len(rows) <= 24 and int(sel.labels[rows].sum()) <= round(0.25 * 24)
            assert len(set(rows.tolist())) == len(rows)
    summary = summarise_selections(selections)
    assert 0.0 <= min(summary["jaccard"]) <= max(summary["jaccard"]) <= 1.0
