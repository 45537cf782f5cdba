"""DSFD: the solution model against the public VGG-16 checkpoint's names and shapes (186 tensors,
spelled out here from the public code's module tree), strides of every config, FEM known answers,
the adapter (full model through ``utils.detectors``, padded detection, the augmentation, the
project's misplaced anchors) and the autograder's oracles against torch/torchvision."""
import math

import numpy as np
import pytest
import torch

from autograder.dsfd import oracles
from detector.dsfd.config import get_config
from utils.detectors import adapter, load_model
from utils.detectors.notebooks import load_code
from utils.inference import Detections

PUBLIC_PARAMETERS = 49_793_432   # yxlijun/DSFD.pytorch VGG-16 DSFD
VGG_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
             (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
             (26, 512, 512), (28, 512, 512)]      # (index, in, out), 3x3
SOURCES = [256, 512, 512, 1024, 512, 256]


def public_vgg_state_shapes() -> dict[str, list[int]]:
    """The public checkpoint's state_dict (names and shapes), written out from the public code."""
    shapes = {}

    def conv(name, cout, cin, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = [cout, cin, k, k], [cout]

    for index, cin, cout in VGG_CONVS:
        conv(f"vgg.{index}", cout, cin, 3)
    conv("vgg.31", 1024, 512, 3)
    conv("vgg.33", 1024, 1024, 1)
    for k, c in enumerate(SOURCES[:3], 1):
        shapes[f"L2Normof{k}.weight"] = [c]
    for k, (cout, cin, size) in enumerate([(256, 1024, 1), (512, 256, 3), (128, 512, 1), (256, 128, 3)]):
        conv(f"extras.{k}", cout, cin, size)
    for k, (cin, cout) in enumerate([(256, 256), (256, 512), (512, 1024), (1024, 512), (512, 512), (512, 256)]):
        conv(f"fpn_topdown.{k}", cout, cin, 1)
    for k, c in enumerate([512, 1024, 512, 512, 256]):
        conv(f"fpn_latlayer.{k}", c, c, 1)
    for k, c in enumerate(SOURCES):
        a, b = c // 3, c - 2 * (c // 3)
        conv(f"fpn_fem.{k}.branch1", a, c, 3)
        conv(f"fpn_fem.{k}.branch2.0", a, c, 3)
        conv(f"fpn_fem.{k}.branch2.2", a, a, 3)
        conv(f"fpn_fem.{k}.branch3.0", b, c, 3)
        conv(f"fpn_fem.{k}.branch3.2", b, b, 3)
        conv(f"fpn_fem.{k}.branch3.4", b, b, 3)
    for k, c in enumerate(SOURCES[:3], 1):
        shapes[f"L2Normef{k}.weight"] = [c]
    for head, out in (("loc_pal1", 4), ("conf_pal1", 2), ("loc_pal2", 4), ("conf_pal2", 2)):
        for k, c in enumerate(SOURCES):
            conv(f"{head}.{k}", out, c, 3)
    return shapes


@pytest.fixture(scope="module")
def code():
    module = adapter("dsfd")
    return load_code("dsfd", "solutions", module.NOTEBOOKS)


@pytest.fixture(scope="module")
def full_vgg():
    return load_model("dsfd", "vgg16")


def test_public_facts_are_186_tensors():
    shapes = public_vgg_state_shapes()
    assert len(shapes) == 186
    assert sum(math.prod(s) for s in shapes.values()) == PUBLIC_PARAMETERS
    assert shapes["fpn_fem.0.branch1.weight"] == [85, 256, 3, 3]
    assert shapes["fpn_fem.3.branch3.4.weight"] == [342, 342, 3, 3]


def test_full_vgg_model_has_the_public_names_and_shapes(full_vgg):
    got = {name: list(t.shape) for name, t in full_vgg.state_dict().items()}
    assert got == public_vgg_state_shapes()
    assert list(got) == list(public_vgg_state_shapes())   # the checkpoint's order too


def test_public_style_checkpoint_loads_strictly(full_vgg, tmp_path):
    state = {name: torch.full(shape, 0.5) for name, shape in public_vgg_state_shapes().items()}
    path = tmp_path / "dsfd_public_layout.pth"
    torch.save(state, path)
    model = load_model("dsfd", "vgg16", weights=path)
    assert torch.equal(model.state_dict()["conf_pal2.5.bias"], torch.full((2,), 0.5))


@pytest.mark.parametrize("name", ["vgg16_lite", "efficientnet_b0_lite", "efficientnet_b1_lite"])
def test_source_strides_match_the_anchor_steps(code, name):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = adapter("dsfd").build_model(cfg, code).train()
    with torch.no_grad():
        loc1, conf1, loc2, conf2 = model(torch.zeros(1, 3, 256, 384))
    expected = sum((256 // s) * (384 // s) for s in cfg["steps"])
    assert loc1.shape == loc2.shape == (1, expected, 4) and conf1.shape == conf2.shape == (1, expected, 2)
    model.eval()
    with torch.no_grad():
        assert len(model(torch.zeros(1, 3, 128, 128))) == 2   # eval: the second shot only


def test_project_taps_fail_with_a_stride_mismatch(code):
    model = adapter("dsfd").build_model(get_config("efficientnet_b0_project_lite", check_strides=True), code)
    with pytest.raises(ValueError, match=r"source map 0 is 8 x 8 .*stride 16.*misplaced"):
        model.eval()(torch.zeros(1, 3, 128, 128))


def _fem_with(code, channels, setter):
    fem = code.get("FEM", "1_model.ipynb")(channels)
    with torch.no_grad():
        for name, p in fem.named_parameters():
            p.zero_()
            setter(name, p)
    return fem


def test_fem_known_answer_centre_taps(code):
    """Centre taps 1, biases 0: every branch computes relu(sum of channels) (branch1 without relu)."""
    fem = _fem_with(code, 3, lambda name, p: p[:, :, 1, 1].fill_(1.0) if p.dim() == 4 else None)
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    s = torch.relu(x.sum(dim=1, keepdim=True))
    assert torch.allclose(fem(x), s.repeat(1, 3, 1, 1), atol=1e-6)


def test_fem_known_answer_dilation_three(code):
    """branch1's top-left tap alone: output(i, j) = relu(sum_c x(i - 3, j - 3)), zero-padded."""
    def setter(name, p):
        if name == "branch1.weight":
            p[:, :, 0, 0] = 1.0
    fem = _fem_with(code, 3, setter)
    x = torch.rand(1, 3, 7, 8, generator=torch.Generator().manual_seed(1))
    want = torch.zeros(1, 1, 7, 8)
    want[:, :, 3:, 3:] = x.sum(dim=1, keepdim=True)[:, :, :-3, :-3]
    assert torch.allclose(fem(x)[:, :1], want, atol=1e-6)
    assert torch.count_nonzero(fem(x)[:, 1:]) == 0


def test_oracles_agree_with_torch():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    manual = x / (x.pow(2).sum(1, keepdim=True).sqrt() + oracles.L2NORM_EPS)
    assert torch.allclose(oracles.l2norm(x, 4), manual * oracles._seeded("weight", [4])[None, :, None, None])
    small, big = torch.randn(1, 2, 2, 3, dtype=torch.float64), torch.randn(1, 2, 4, 6, dtype=torch.float64)
    assert not torch.allclose(oracles.upsample_product(small, big),
                              oracles.upsample_product(small, big, align_corners=True))


def test_padded_detector_runs_any_size(code):
    cfg = get_config("vgg16_lite")
    module = adapter("dsfd")
    torch.manual_seed(0)
    detector = module.build_detector(module.build_model(cfg, code).eval(), cfg, code, conf_thresh=0.0, top_k=50)
    images = [np.full((100, 150, 3), 120, np.uint8), np.full((130, 90, 3), 60, np.uint8)]
    assert detector.prepare(images).shape == (2, 3, 256, 256)
    found = detector.detect(images)
    assert len(found) == 2 and all(len(d.boxes) > 0 for d in found)


def test_scale_split_keeps_each_pass_sizes_and_merges_by_nms(code, monkeypatch):
    """The lite detector's two passes: full size keeps boxes up to 64 px, half size those above 32 px
    (in original pixels, so the half pass's boxes are scaled by 2), then one NMS over both."""
    module = adapter("dsfd")
    cfg = get_config("vgg16_lite")
    detector = module.build_detector(module.build_model(cfg, code).eval(), cfg, code)
    assert detector.scales == module.LITE_TEST_SCALES
    seen = []

    def fake_pass(self, images):                       # boxes in the pixels of the pass's input
        seen.append([image.shape[:2] for image in images])
        if images[0].shape[1] == 200:                  # full size
            boxes = [[10, 10, 50, 50], [100, 20, 190, 110], [12, 12, 52, 52]]   # 40 px, 90 px, 40 px
            scores = [0.9, 0.95, 0.5]
        else:                                          # half size
            boxes = [[50, 10, 95, 55], [5, 5, 12, 12], [5, 5, 25, 25]]          # 90, 14, 40 px at x2
            scores = [0.7, 0.99, 0.8]
        return [Detections(np.array(boxes, np.float32), np.array(scores, np.float32), None)]

    monkeypatch.setattr(module.PaddedDetector, "detect", fake_pass)
    found = detector.detect([np.zeros((120, 200, 3), np.uint8)])[0]
    assert seen == [[(120, 200)], [(60, 100)]]
    np.testing.assert_allclose(found.boxes, [[10, 10, 50, 50], [100, 20, 190, 110]])
    np.testing.assert_allclose(found.scores, [0.9, 0.7])
    single = module.make_detector(module.load_homework(code), detector.model, cfg, scales=module.SINGLE_SCALE)
    assert len(single.detect([np.zeros((120, 200, 3), np.uint8)])[0]) == 3     # one pass, untouched
    with pytest.raises(ValueError, match="scales"):
        module.make_detector(module.load_homework(code), detector.model, cfg, scales=((0.5, 64, 32),))


def test_augment_keeps_faces_in_the_crop(code):
    module = adapter("dsfd")
    hw = module.load_homework(code)
    augment = module.DsfdAugment(128, 1.0, hw.data_anchor_sampling, [16, 32, 64, 128, 256, 512])
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    targets = np.full((3, 15), -1.0, np.float32)
    targets[:, :4] = [[10, 20, 40, 55], [100, 100, 130, 140], [200, 50, 260, 120]]
    for seed in range(5):
        tensor, out = augment(image, targets, np.random.default_rng(seed))
        assert tensor.shape == (3, 128, 128)
        assert len(out) >= 1 and out[:, :4].min() >= 0 and out[:, :4].max() <= 1
        assert (out[:, 2:4] > out[:, :2]).all()


def test_misplaced_priors_equal_pal_priors_for_correct_taps(code):
    module = adapter("dsfd")
    hw = module.load_homework(code)
    cfg = get_config("efficientnet_b0_lite")
    assert torch.allclose(module.misplaced_priors(cfg, (256, 384), hw.pal_priors),
                          torch.stack(hw.pal_priors(cfg, (256, 384))))
    project = module.misplaced_priors(get_config("efficientnet_b0_project"), (640, 640), hw.pal_priors)[1]
    level0 = project[:40 * 40]
    assert math.isclose(float(level0[:, 0].max()), 39.5 * 4 / 640, rel_tol=1e-6)   # a quarter of the image


def _spatial_signal(model, layer: str) -> float:
    """Mean over channels of the spatial std of ``layer``'s output on one image-like input."""
    found = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: found.update(out=o))
    torch.manual_seed(1)
    with torch.no_grad():
        model(torch.randn(1, 3, 256, 256) * 60)   # pixels minus the mean colour
    handle.remove()
    return float(found["out"].std(dim=(2, 3)).mean())


def test_init_from_scratch_keeps_the_image_in_the_deep_maps(code):
    """PyTorch's default init leaves the VGG-lite's multiplicative FPN a ~1e-5 spatial signal (the
    detector starts blind); the demo's He init must carry it through, without blowing it up."""
    module = adapter("dsfd")
    torch.manual_seed(0)
    model = module.build_model(get_config("vgg16_lite"), code).train()
    layer = "fpn_topdown.3"
    assert _spatial_signal(model, layer) < 1e-3          # the failure init_from_scratch repairs
    module.init_from_scratch(model)
    assert 1e-1 < _spatial_signal(model, layer) < 1e3
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 256, 256) * 60)
    assert all(0.01 < float(o.std()) < 10 for o in outputs)   # heads start small and finite
    assert all(float(m.bias.abs().max()) == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
