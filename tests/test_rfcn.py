"""Face R-FCN: the solutions' layers against known answers and torchvision (ps_roi_pool, nms),
the grader's loop oracles against torchvision, invariants of the sampling layers, and the adapter
(build, one training step, detect) on tiny inputs."""
from functools import lru_cache

import numpy as np
import pytest
import torch
import torchvision

from autograder.rfcn import oracles
from autograder.rfcn.inputs import clustered_boxes, faces, integer_maps, random_rois
from autograder.rfcn.test_rfcn_boxes import CLASSIC_ANCHORS
from tests.notebooks import REPO_ROOT
from utils.notebook import load_notebook

SOLUTIONS = REPO_ROOT / "solutions" / "rfcn"


@lru_cache(maxsize=None)
def nb(name: str):
    return load_notebook(SOLUTIONS / name)


def anchors_nb():
    return nb("1_anchors_boxes.ipynb")


def model_nb():
    return nb("2_psroi_model.ipynb")


def targets_nb():
    return nb("3_targets_losses.ipynb")


def test_generate_anchors_returns_the_classic_nine_exactly():
    assert torch.equal(anchors_nb().generate_anchors(), CLASSIC_ANCHORS)
    assert torch.equal(oracles.generate_anchors(), CLASSIC_ANCHORS)
    # the header comment's 1-based values are these + 1
    assert CLASSIC_ANCHORS[0].tolist() == [-84.0, -40.0, 99.0, 55.0]


def test_shift_anchors_order_is_row_column_anchor():
    base = anchors_nb().generate_anchors(16, (1.0,), (1, 2))
    shifted = anchors_nb().shift_anchors(base, 2, 3, 16)
    assert torch.equal(shifted, oracles.shift_anchors(base, 2, 3, 16))
    assert torch.equal(shifted[(1 * 3 + 2) * 2 + 1], base[1] + torch.tensor([32.0, 16.0, 32.0, 16.0]))


@pytest.mark.parametrize("scale", [1 / 16, 1 / 8, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_ps_roi_pool_equals_torchvision_on_integer_maps(scale, seed):
    image = 12 / scale
    maps = integer_maps(2, 2 * 9, 12, 15, seed)
    rois = random_rois(60, 2, image, seed + 10, on_grid=20)  # reach past the border; x / 16 = n + 0.5
    got = model_nb().ps_roi_pool(maps, rois, 3, scale)
    assert torch.equal(got, torchvision.ops.ps_roi_pool(maps, rois, 3, scale))


def test_ps_roi_pool_clips_the_forward_at_w_minus_1():
    x = torch.arange(36.0).reshape(1, 4, 3, 3)
    out = model_nb().ps_roi_pool(x, torch.tensor([[0.0, 0, 0, 3, 3]]), 2)
    assert out[0, 0, 1, 1] == 31.0 == torchvision.ops.ps_roi_pool(x, torch.tensor([[0.0, 0, 0, 3, 3]]), 2)[0, 0, 1, 1]


def test_ps_roi_pool_loop_oracle_equals_torchvision_and_gradients_match():
    maps = integer_maps(1, 2 * 4, 7, 8, 5, torch.float64)
    rois = random_rois(15, 1, 112.0, 6, torch.float64, on_grid=5)
    assert torch.equal(oracles.ps_roi_pool(maps, rois, 2, 1 / 16), torchvision.ops.ps_roi_pool(maps, rois, 2, 1 / 16))
    a, b = maps.clone().requires_grad_(True), maps.clone().requires_grad_(True)
    model_nb().ps_roi_pool(a, rois, 2, 1 / 16).sum().backward()
    oracles.ps_roi_pool(b, rois, 2, 1 / 16).sum().backward()
    assert torch.allclose(a.grad, b.grad)


def _psroi_args(name):
    from autograder.rfcn import cases
    x = {c.name: c for c in cases.PSROI_CASES}[name].make_inputs(None)
    return x["features"], x["rois"], x["output_size"], x["spatial_scale"]


@pytest.mark.parametrize("name", ["integer maps, 40 RoIs, k = 3, scale 1/16", "integer maps, 30 RoIs, k = 7, scale 1/8",
                                  "2 x 3 grid, scale 1", "random float maps, 50 RoIs, k = 3, scale 1/16",
                                  "gradient of a weighted sum (float64)"])
def test_ps_roi_pool_idea_cases_do_not_depend_on_torchvisions_artefacts(name):
    """On the idea's RoIs every round-to-nearest rule and a clamp to W give torchvision's answer, and
    the classic channel mistake does not."""
    args = _psroi_args(name)
    want = torchvision.ops.ps_roi_pool(*args)
    for rule in ("half away from zero", "half to even", "half up"):
        assert torch.allclose(oracles.ps_roi_pool(*args, rounding=rule), want, rtol=1e-6, atol=1e-6), rule
    assert torch.allclose(oracles.ps_roi_pool(*args, clip_last=False), want, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(oracles.ps_roi_pool(*args, bin_major=True), want)
    assert not torch.allclose(oracles.ps_roi_pool(*args, rounding="down"), want)


def test_ps_roi_pool_rounding_case_tells_every_rule_apart():
    from autograder.rfcn import cases
    args = _psroi_args(cases.PSROI_ROUNDING)
    want = torchvision.ops.ps_roi_pool(*args)
    assert torch.equal(oracles.ps_roi_pool(*args), want)
    assert torch.allclose(oracles.ps_roi_pool(*args, clip_last=False), want)  # rounding only, not the clamp
    for rule in ("half to even", "half up", "down", "toward zero"):
        assert not torch.allclose(oracles.ps_roi_pool(*args, rounding=rule), want), rule


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_nms_vectorised_equals_torchvision(ties, thresh):
    for seed in range(4):
        boxes, scores = clustered_boxes(150, 40 + seed, ties=ties)
        assert torch.equal(anchors_nb().nms_vectorised(boxes, scores, thresh),
                           torchvision.ops.nms(boxes, scores, thresh))


def test_fast_nms_differs_from_greedy_on_the_three_box_chain():
    boxes = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert anchors_nb().nms_vectorised(boxes, scores, 0.5).tolist() == [0, 2]
    assert oracles.fast_nms(boxes, scores, 0.5).tolist() == [0]


def test_bbox_transform_round_trip_and_zero_deltas_keep_the_box():
    rois = torch.tensor([[0.0, 0, 10, 20], [5, 5, 9, 30]])
    gt = torch.tensor([[2.0, 3, 14, 25], [4, 4, 8, 40]])
    nb1 = anchors_nb()
    stds = (0.1, 0.1, 0.2, 0.2)
    assert torch.allclose(nb1.bbox_transform_inv(rois, nb1.bbox_transform(rois, gt, stds), stds), gt, atol=1e-5)
    assert torch.equal(nb1.bbox_transform_inv(rois, torch.zeros(2, 4)), rois)  # no "+1" drift


def test_anchor_target_invariants():
    anchors = oracles.shift_anchors(oracles.generate_anchors(16, (1.0,), (1, 2, 4, 8, 16)), 6, 8, 16)
    gt = faces(12, 96.0, 3, 12.0, 40.0)
    labels, targets = targets_nb().anchor_target_layer(anchors, gt, (96, 128), torch.Generator().manual_seed(0), 32)
    full = oracles.anchor_labels(anchors, gt, (96, 128))
    assert set(labels.unique().tolist()) <= {-1, 0, 1}
    assert int((labels == 1).sum()) == min(16, int((full == 1).sum()))
    assert int((labels >= 0).sum()) == 32
    assert bool(((labels == 1) <= (full == 1)).all()) and bool(((labels == 0) <= (full == 0)).all())
    outside = (anchors[:, 0] < 0) | (anchors[:, 1] < 0) | (anchors[:, 2] > 128) | (anchors[:, 3] > 96)
    assert bool((labels[outside] == -1).all()) and bool((targets[outside] == 0).all())
    # every face has a positive anchor before subsampling (forced best anchors)
    best_per_face = oracles.box_iou(anchors, gt).argmax(0)
    assert bool((full[best_per_face] == 1).all())


def test_proposal_target_invariants():
    gt = faces(4, 200.0, 7, 12.0, 60.0)
    rois = torch.cat([gt + torch.randn(4, 4, generator=torch.Generator().manual_seed(1)) * 3,
                      random_rois(200, 1, 200.0, 8)[:, 1:]])
    rois = torch.cat([torch.min(rois[:, :2], rois[:, 2:] - 1), rois[:, 2:]], 1)
    out_rois, labels, targets = targets_nb().proposal_target_layer(rois, gt, torch.Generator().manual_seed(0))
    assert len(out_rois) <= 128 and int(labels.sum()) <= 32
    iou = oracles.box_iou(out_rois, gt).max(1).values
    assert bool((iou[labels == 1] >= 0.5).all()) and bool((iou[labels == 0] < 0.5).all())
    assert bool((targets[labels == 0] == 0).all())


def test_ohem_keeps_hardest_after_nms():
    g = torch.Generator().manual_seed(0)
    boxes, _ = clustered_boxes(60, 3)
    logits, deltas = torch.randn(60, 2, generator=g), torch.randn(60, 4, generator=g)
    labels, targets = torch.randint(0, 2, (60,), generator=g), torch.randn(60, 4, generator=g)
    keep = targets_nb().ohem_select(logits, deltas, labels, targets, boxes, 16)
    assert torch.equal(keep, oracles.ohem_select(logits, deltas, labels, targets, boxes, 16, 0.7, 1.0))


def test_adapter_builds_trains_one_step_and_detects(tmp_path):
    from detector.rfcn.config import get_config
    from utils.detectors import load_code, load_detector, load_model
    from utils.detectors.rfcn import NOTEBOOKS, RFCNCriterion, load_homework

    cfg = get_config("resnet18-lite", image_size=64)
    model = load_model("rfcn", cfg).train()
    hw = load_homework(load_code("rfcn", "solutions", NOTEBOOKS))
    criterion = RFCNCriterion(hw, model, cfg)
    targets = [torch.tensor([[0.2, 0.2, 0.5, 0.55] + [-1.0] * 11]), torch.zeros(0, 15)]
    parts = criterion(model(torch.randn(2, 3, 64, 64)), targets)
    assert set(parts) == {"rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"}
    sum(parts.values()).backward()
    assert model.cls_vote.grad is not None
    detector = load_detector("rfcn", model.eval(), cfg)
    (found,) = detector.detect([np.full((70, 90, 3), 128, np.uint8)])
    assert found.boxes.shape[1] == 4 and found.landmarks is None
    assert (found.boxes[:, 2] <= 90).all() and (found.boxes[:, 3] <= 70).all()
