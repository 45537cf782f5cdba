"""TinaFace: the full model through the detector interface (vedadet's names and parameter counts,
102 375 anchors at 640 x 640), the solutions against independent oracles (torchvision's
deform_conv2d, the loop anchors and assignment, the fusion formula, vedadet's schedule) and the
engine driven by the notebook's schedule (bit-identical to the engine's former ``cosine_restart``)."""
import math

import numpy as np
import pytest
import torch
import torchvision

from autograder.tinaface import oracles
from detector.tinaface.config import ANCHOR_RATIO, FUSION_EPS, NUM_ANCHOR_SCALES, OCTAVE_BASE_SCALE, STRIDES
from utils.detectors import load_code, load_detector, load_model
from utils.detectors.tinaface import NOTEBOOKS, vedadet_lr_schedule  # NOTEBOOKS: (model, boxes and losses)
from utils.inference import Detections
from utils.training.config import TrainConfig
from utils.training.optim import build_optimizer, build_scheduler

FULL_ANCHORS_640 = 102_375
# vedadet tinaface_r50_fpn_gn_dcn: parameters of the shared Inception, the FPN and the head (computed
# from its config by hand, /work/shared/references/tinaface.md).
VEDADET_PARAMS = {"neck.1": 553_728, "neck.0": 8_655_872, "bbox_head": 4_764_178}


@pytest.fixture(scope="module")
def code():
    return load_code("tinaface", "solutions", NOTEBOOKS)


@pytest.fixture(scope="module")
def nb(code):
    return code.module(NOTEBOOKS[0]), code.module(NOTEBOOKS[1])


@pytest.fixture(scope="module")
def full_model():
    return load_model("tinaface", "r50-gn-dcn")


def test_anchor_count_at_640_is_102375(nb):
    analytic = NUM_ANCHOR_SCALES * sum(math.ceil(640 / s) ** 2 for s in STRIDES)
    assert analytic == FULL_ANCHORS_640
    assert nb[1].tinaface_anchors((640, 640)).shape == (FULL_ANCHORS_640, 4)


def test_full_model_outputs_one_row_per_anchor(nb, full_model):
    size = (96, 160)
    with torch.no_grad():
        bbox_pred, cls, iou = full_model(torch.zeros(1, 3, *size))
    rows = len(nb[1].tinaface_anchors(size))
    assert bbox_pred.shape == (1, rows, 4) and cls.shape == (1, rows, 1) and iou.shape == (1, rows, 1)
    # the same count for 640 x 640, from the feature-map sizes the backbone and FPN produce
    sizes = [math.ceil(640 / s) for s in STRIDES]
    assert NUM_ANCHOR_SCALES * sum(n * n for n in sizes) == FULL_ANCHORS_640


def test_full_model_has_vedadet_names_and_sizes(full_model):
    names = full_model.state_dict()
    for name in ("backbone.conv1.weight", "backbone.layer3.0.conv2.weight",
                 "backbone.layer3.0.conv2.conv_offset.weight", "backbone.layer4.2.conv2.conv_offset.bias",
                 "neck.0.lateral_convs.3.conv.weight", "neck.0.fpn_convs.4.gn.weight",
                 "neck.0.fpn_convs.5.conv.weight", "neck.1.convs.4.gn.bias", "bbox_head.cls_convs.3.conv.weight",
                 "bbox_head.reg_convs.0.gn.weight", "bbox_head.retina_iou.bias"):
        assert name in names, name
    assert "backbone.layer2.0.conv2.conv_offset.weight" not in names          # DCN only in layer3/4
    assert sum(".conv_offset.weight" in n for n in names) == 9                 # 6 + 3 blocks
    assert not any("running_mean" in n for n in names)                          # GroupNorm everywhere
    for prefix, count in VEDADET_PARAMS.items():
        assert sum(p.numel() for n, p in full_model.named_parameters() if n.startswith(prefix + ".")) == count
    assert names["neck.0.fpn_convs.4.conv.weight"].shape == (256, 2048, 3, 3)  # P6 from C5
    bias = full_model.bbox_head.retina_cls.bias
    assert torch.allclose(bias, torch.full_like(bias, -math.log(99)))


@pytest.mark.parametrize("seed, stride, padding, dilation, groups, scale", [
    (0, 1, 1, 1, 1, 0.0), (1, 1, 1, 1, 1, 2.0), (2, 2, 1, 1, 2, 1.0), (3, 1, 2, 2, 1, 5.0), (4, 2, 0, 1, 3, 0.5)])
def test_deform_sampling_matches_torchvision(nb, seed, stride, padding, dilation, groups, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3 * groups, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3 * groups, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h_out = (7 + 2 * padding - 2 * dilation - 1) // stride + 1
    w_out = (8 + 2 * padding - 2 * dilation - 1) // stride + 1
    offset = (torch.randn(2, 18 * groups, h_out, w_out, generator=g, dtype=torch.float64) * scale)
    if seed == 3:
        offset = offset.round()                   # integer offsets: the one-sided derivative convention
    offset.requires_grad_(True)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    got = nb[0].deform_conv2d_sampling(x, offset, w, **kw)
    want = torchvision.ops.deform_conv2d(x, offset, w, **kw)
    torch.testing.assert_close(got, want)
    cotangent = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * cotangent).sum(), (x, offset, w)),
                    torch.autograd.grad((want * cotangent).sum(), (x, offset, w))):
        torch.testing.assert_close(a, b)


def test_dcn_layer_starts_as_a_plain_convolution(nb):
    torch.manual_seed(0)
    layer = nb[0].DeformConv2dPack(4, 6, 3, 2, 1)
    x = torch.randn(1, 4, 9, 9)
    torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, layer.weight, stride=2, padding=1))


def test_fusion_matches_the_formula(nb):
    inputs = [torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in range(3)]
    for raw in ([1.0, 2.0, 0.5], [-1.0, 0.3, 0.0], [0.0, 0.0, 0.0]):
        weights = torch.tensor(raw, dtype=torch.float64)
        torch.testing.assert_close(nb[0].fast_normalized_fusion(inputs, weights),
                                   oracles.fusion(inputs, weights, FUSION_EPS))


def test_bifpn_keeps_level_shapes_and_uses_2_and_3_input_nodes(nb):
    layer = nb[0].BiFPNLayer(16, 6, 4)
    assert [len(w) for w in layer.td_weights] == [2] * 5
    assert [len(w) for w in layer.bu_weights] == [3, 3, 3, 3, 2]
    feats = [torch.randn(1, 16, math.ceil(50 / s), math.ceil(70 / s)) for s in STRIDES]
    assert [o.shape for o in layer(feats)] == [f.shape for f in feats]


@pytest.mark.parametrize("size", [(64, 96), (37, 100)])
def test_anchors_match_the_loop_definition(nb, size):
    want = oracles.anchors(size, STRIDES, OCTAVE_BASE_SCALE, NUM_ANCHOR_SCALES, ANCHOR_RATIO)
    torch.testing.assert_close(nb[1].tinaface_anchors(size).double(), want, atol=1e-4, rtol=1e-6)
    first = nb[1].tinaface_anchors((640, 640))[:3]               # vedadet's stride-4 sizes (w, h)
    torch.testing.assert_close(first[:, 2] - first[:, 0], torch.tensor([8.84, 11.14, 14.03]), atol=0.01, rtol=0)
    torch.testing.assert_close(first[:, 3] - first[:, 1], torch.tensor([11.49, 14.48, 18.24]), atol=0.01, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_assignment_matches_the_loop_definition(nb, seed):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.rand(200, 2, generator=g) * 60
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(200, 2, generator=g) * 30], 1)
    faces = torch.rand(5, 2, generator=g) * 60
    faces = torch.cat([faces, faces + 5 + torch.rand(5, 2, generator=g) * 30], 1)
    want = oracles.assign(anchors.double(), faces.double(), 0.35, 0.35)
    assert torch.equal(nb[1].max_iou_assign(anchors, faces), want)
    assert torch.equal(nb[1].max_iou_assign(anchors, faces[:0]), torch.full((200,), -1))


def test_box_coding_round_trip_and_losses_match_torchvision(nb):
    g = torch.Generator().manual_seed(5)
    a = torch.rand(50, 2, generator=g, dtype=torch.float64) * 80
    anchors = torch.cat([a, a + 4 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 40], 1)
    b = torch.rand(50, 2, generator=g, dtype=torch.float64) * 80
    faces = torch.cat([b, b + 4 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 40], 1)
    deltas = nb[1].delta_xywh_encode(anchors, faces)
    torch.testing.assert_close(deltas, oracles.encode(anchors, faces))
    torch.testing.assert_close(nb[1].delta_xywh_decode(anchors, deltas), faces)
    torch.testing.assert_close(nb[1].diou_loss(anchors, faces),
                               torchvision.ops.distance_box_iou_loss(anchors, faces, eps=1e-6))
    logits = torch.randn(50, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(50, generator=g) < 0.3).double()
    torch.testing.assert_close(nb[1].sigmoid_focal_loss(logits, targets, reduction="sum"),
                               torchvision.ops.sigmoid_focal_loss(logits, targets, reduction="sum"))


def test_warmup_cosine_lr_is_vedadets_schedule(nb):
    for it in (0, 250, 499, 500, 2900, 2999, 3000, 6100):
        want = oracles.cosine_restart_lr(it, 100, 3.75e-3, 500, 0.1, 30, 0.01)
        assert nb[1].warmup_cosine_lr(it, 100, 3.75e-3) == pytest.approx(want, rel=1e-12)
    assert oracles.cosine_restart_lr(2900, 100, 3.75e-3, 500, 0.1, 30, 0.01) == pytest.approx(4.77e-5, rel=1e-3)


# (peak lr, warmup iterations, warmup ratio, end ratio): vedadet's, TrainConfig's defaults, a short warmup
ENGINE_SETTINGS = [(3.75e-3, 500, 0.1, 0.01), (1e-3, 0, 1e-3, 0.0), (0.02, 37, 0.3, 0.1)]


@pytest.mark.parametrize("lr, warmup, ratio, end", ENGINE_SETTINGS)
@pytest.mark.parametrize("iters_per_epoch", [100, 7, 1])
def test_engine_with_the_notebooks_schedule_is_bit_identical_to_its_former_cosine_restart(
        code, lr, warmup, ratio, end, iters_per_epoch):
    """The engine no longer holds vedadet's schedule (it answered ``warmup_cosine_lr``); run with the
    solution's function (``vedadet_lr_schedule``, as ``train_model(..., vedadet_schedule=True)``) it
    sets exactly the lrs of its former ``TrainConfig(schedule='cosine_restart')`` (30-epoch restarts)."""
    config = TrainConfig(lr=lr, warmup_iterations=warmup, warmup_ratio=ratio, min_lr_ratio=end)
    steps = 65 * iters_per_epoch + 600                       # past two restarts and the longest warmup
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    scheduler = build_scheduler(optimizer, config, iters_per_epoch, steps, vedadet_lr_schedule(code, config))
    for it in range(steps):
        former = lr * oracles.engine_cosine_restart_factor(it, iters_per_epoch, 30, warmup, ratio, end)
        assert optimizer.param_groups[0]["lr"] == former, it
        optimizer.step()
        scheduler.step()


def test_warmup_cosine_lr_at_lr_1_is_the_former_engine_factor(nb):
    for kw in ({"period": 5, "warmup_iters": 30, "warmup_ratio": 0.3, "min_lr_ratio": 0.1},
               {"period": 1, "warmup_iters": 3, "warmup_ratio": 0.5, "min_lr_ratio": 0.0}, {}):
        full = {"period": 30, "warmup_iters": 500, "warmup_ratio": 0.1, "min_lr_ratio": 0.01, **kw}
        for it in range(0, 20_000, 7):
            assert nb[1].warmup_cosine_lr(it, 13, 1.0, **kw) == oracles.engine_cosine_restart_factor(
                it, 13, full["period"], full["warmup_iters"], full["warmup_ratio"], full["min_lr_ratio"]), (kw, it)


def test_loss_runs_and_trains_all_three_heads(nb):
    torch.manual_seed(0)
    model = load_model("tinaface", "lite").train()
    anchors = nb[1].tinaface_anchors((64, 64))
    targets = [torch.tensor([[0.2, 0.2, 0.5, 0.6] + [0.0] * 10 + [1.0]]), torch.zeros(0, 15)]
    parts = nb[1].TinaFaceLoss(64)(model(torch.randn(2, 3, 64, 64)), targets, anchors)
    assert set(parts) == {"cls", "reg", "iou"} and all(torch.isfinite(v) for v in parts.values())
    sum(parts.values()).backward()
    assert model.bbox_head.retina_iou.weight.grad.abs().sum() > 0
    assert model.bbox_head.retina_reg.weight.grad.abs().sum() > 0


def test_detector_returns_detections_ranked_by_fused_score(nb):
    torch.manual_seed(0)
    model = load_model("tinaface", "lite")
    detector = load_detector("tinaface", model, "lite", conf_thresh=0.0, keep_top_k=20)
    images = [np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8),
              np.random.default_rng(1).integers(0, 255, (50, 64, 3), dtype=np.uint8)]
    found = detector.detect(images)
    assert len(found) == 2 and all(isinstance(d, Detections) for d in found)
    for d in found:
        assert 0 < len(d) <= 20 and np.all(np.diff(d.scores) <= 0)
    with torch.no_grad():                           # the best detection has the best fused score
        _, cls, iou = model(detector.prepare(images[:1]))
    best = nb[1].tinaface_scores(cls, iou).max()
    assert found[0].scores[0] == pytest.approx(float(best), rel=1e-5)
