"""utils.inference: the vectorised batched post-processing against a straightforward per-image
reference, the threshold / top-k / keep-top-k semantics on crafted scores, batching images of
different sizes, the priors cache, empty results and input errors. Stub models only (fast)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from utils.inference import Detections, Detector, PriorCache, predict_dataset, softmax_face_scores
from utils.wider_predictions import read_prediction_file, write_predictions

STRIDE = 8
ANCHOR_SIDES = (16.0, 24.0)   # pixels; neighbours at stride 8 overlap with IoU > 0.4
VARIANCES = (0.1, 0.2)


def grid_priors(size: tuple[int, int]) -> torch.Tensor:
    """[P, 4] (cx, cy, w, h) normalised: one cell per STRIDE pixels (ceil), ANCHOR_SIDES per cell."""
    height, width = size
    rows, cols = -(-height // STRIDE), -(-width // STRIDE)
    cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * STRIDE / height,
                            (torch.arange(cols) + 0.5) * STRIDE / width, indexing="ij")
    per_side = [torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], -1)
                for s in ANCHOR_SIDES]                                     # each [rows, cols, 4]
    return torch.stack(per_side, dim=2).reshape(-1, 4)


def decode(loc, priors, variances):
    """[K, 4] offsets -> [K, 4] (x1, y1, x2, y2) normalised (the homework's formula)."""
    centres = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def decode_landm(pre, priors, variances):
    """[K, 10] offsets -> [K, 10] points normalised."""
    return (priors[:, None, :2] + pre.reshape(-1, 5, 2) * variances[0] * priors[:, None, 2:]).reshape(-1, 10)


def reference_postprocess(loc, conf, landm, priors, size, conf_thresh, nms_thresh, top_k, keep_top_k,
                          decode_fn=decode, decode_landm_fn=decode_landm):
    """One image, as the public test script does it: decode every prior, threshold, sort, top-k,
    NMS, keep-top-k. loc [P, 4], conf [P, 2] logits, landm [P, 10]; size (H, W).
    Returns (boxes [K, 4], scores [K], landmarks [K, 10]) in pixels."""
    height, width = size
    boxes = decode_fn(loc, priors, VARIANCES) * torch.tensor([width, height] * 2)
    points = decode_landm_fn(landm, priors, VARIANCES) * torch.tensor([width, height] * 5)
    scores = conf.softmax(-1)[:, 1]
    idx = torch.nonzero(scores > conf_thresh).flatten()
    idx = idx[torch.argsort(scores[idx], descending=True)][:top_k]
    keep = idx[torchvision.ops.nms(boxes[idx], scores[idx], nms_thresh)][:keep_top_k]
    return boxes[keep], scores[keep], points[keep]


class PatchModel(torch.nn.Module):
    """Outputs for the priors of ``grid_priors``, computed from each 8x8 patch alone (so an
    image's outputs do not depend on padding): mean-zero padding scores as background."""

    def forward(self, x):
        f = F.avg_pool2d(x, STRIDE, ceil_mode=True)                       # [B, 3, h, w]
        side = torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2, 1)               # the two anchors differ
        f = f.permute(0, 2, 3, 1)[:, :, :, None, :].expand(-1, -1, -1, 2, -1)  # [B, h, w, 2, 3]
        face = f[..., :1] / 10 - 6 + side                                  # [B, h, w, 2, 1]
        conf = torch.cat([torch.zeros_like(face), face], -1).flatten(1, 3)  # [B, P, 2]
        loc = torch.cat([f, f[..., :1] * side], -1).flatten(1, 3) / 50     # [B, P, 4]
        landm = torch.cat([f, -f, f, f[..., :1] * side], -1).flatten(1, 3) / 50        # [B, P, 10]
        return loc, conf, landm


class FixedModel(torch.nn.Module):
    """Returns crafted outputs whatever the input (one set per image of the batch)."""

    def __init__(self, *outputs):
        super().__init__()
        self.outputs = outputs
        self.ran_in_training_mode = []

    def forward(self, x):
        self.ran_in_training_mode.append(self.training)
        return tuple(o[: x.shape[0]] for o in self.outputs)


def smooth_images(seed: int, sizes) -> list[np.ndarray]:
    """uint8 BGR images with bright blobs, so scores spread across the threshold."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        yy, xx = np.mgrid[:h, :w]
        image = rng.integers(0, 120, (h, w, 3)).astype(np.float64)
        for _ in range(4):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(6, 20)
            image += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def assert_same(a: Detections, b: Detections) -> None:
    torch.testing.assert_close(torch.from_numpy(a.scores), torch.from_numpy(b.scores))
    torch.testing.assert_close(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes))
    torch.testing.assert_close(torch.from_numpy(a.landmarks), torch.from_numpy(b.landmarks))


def patch_detector(**options) -> Detector:
    return Detector(PatchModel(), grid_priors, decode, decode_landm, VARIANCES, **options)


# -- vectorised batch post-processing == the per-image reference -----------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("conf_thresh,nms_thresh,top_k,keep_top_k",
                         [(0.02, 0.4, 5000, 750), (0.3, 0.3, 40, 10), (0.0, 0.5, 7, 3), (0.1, 0.3, 5, 750),
                          (0.9, 0.4, 5000, 750)])
def test_postprocess_matches_per_image_reference(seed, conf_thresh, nms_thresh, top_k, keep_top_k):
    gen = torch.Generator().manual_seed(seed)
    size, batch = (48, 72), 3
    priors = grid_priors(size)
    loc = torch.randn(batch, len(priors), 4, generator=gen) * 0.5
    conf = torch.randn(batch, len(priors), 2, generator=gen) * 2
    landm = torch.randn(batch, len(priors), 10, generator=gen)
    detector = Detector(FixedModel(), grid_priors, decode, decode_landm, VARIANCES, conf_thresh=conf_thresh,
                        nms_thresh=nms_thresh, top_k=top_k, keep_top_k=keep_top_k)
    found = detector.postprocess((loc, conf, landm), size)
    assert len(found) == batch
    for b in range(batch):
        boxes, scores, points = reference_postprocess(loc[b], conf[b], landm[b], priors, size,
                                                      conf_thresh, nms_thresh, top_k, keep_top_k)
        assert_same(found[b], Detections(boxes.numpy(), scores.numpy(), points.numpy()))


def test_batched_equals_one_by_one_for_different_sizes():
    sizes = [(64, 96), (40, 40), (88, 56), (64, 96)]
    images = smooth_images(0, sizes)
    detector = patch_detector(conf_thresh=0.05)
    together = detector.detect(images)
    alone = [detector.detect([image])[0] for image in images]
    assert sum(len(d) for d in alone) > 20
    # same pixels whatever the padding (an image run alone is not padded)
    for a, b in zip(together, alone):
        assert_same(a, b)


def test_predict_dataset_batches_and_keeps_keys(tmp_path):
    sizes = [(40, 48), (64, 32), (40, 40), (56, 56), (32, 32)]
    images = smooth_images(1, sizes)
    detector = patch_detector(conf_thresh=0.05)
    items = [((f"event{k % 2}", f"img{k}"), image) for k, image in enumerate(images)]
    out = list(predict_dataset(detector, iter(items), batch_size=2))
    assert [key for key, _ in out] == [key for key, _ in items]
    for (_, found), image in zip(out, images):
        assert_same(found, detector.detect([image])[0])
    # the keys and rows are what a WIDER FACE submission file takes
    (event, name), found = out[0]
    _, rows = read_prediction_file(write_predictions(tmp_path, event, name, found.wider_rows()))
    np.testing.assert_allclose(rows, found.wider_rows())
    with pytest.raises(ValueError, match="batch_size"):
        list(predict_dataset(detector, items, batch_size=0))


# -- semantics on crafted scores ---------------------------------------------------------------------

def crafted(boxes_per_image, scores_per_image, **options):
    """A Detector whose model outputs the given boxes [n, 4] (x1, y1, x2, y2 normalised) and face
    probabilities [n] per image; decode is the identity, so the detections are those rows."""
    rows = max(len(s) for s in scores_per_image)
    loc = torch.zeros(len(boxes_per_image), rows, 4)
    conf = torch.zeros(len(boxes_per_image), rows, 2)
    for i, (boxes, scores) in enumerate(zip(boxes_per_image, scores_per_image)):
        loc[i, : len(boxes)] = torch.tensor(boxes, dtype=torch.float32)
        conf[i, : len(scores), 1] = torch.tensor(scores, dtype=torch.float32)
    landm = loc.repeat(1, 1, 3)[..., :10]
    calls = []

    def identity(values, priors, variances):
        calls.append(len(values))
        return values

    detector = Detector(FixedModel(loc, conf, landm), lambda size: torch.zeros(rows, 4), identity, identity,
                        score_fn=lambda c: c[..., 1], **options)
    return detector, calls


IMAGE = np.zeros((10, 10, 3), np.uint8)   # crafted boxes are normalised, so pixels = 10 x them
A, B_OVER_A, C, D = [0, 0, 0.5, 0.5], [0.05, 0.05, 0.55, 0.55], [0.6, 0.6, 0.9, 0.9], [0.6, 0, 0.9, 0.3]


def found_scores(detections) -> list[float]:
    return [round(float(s), 4) for s in detections.scores]


def test_conf_thresh_keeps_scores_strictly_above():
    detector, _ = crafted([[A, C, D]], [[0.5, 0.25, 0.125]], conf_thresh=0.25)
    assert found_scores(detector.detect([IMAGE])[0]) == [0.5]


def test_top_k_applies_before_nms_and_keep_top_k_after():
    boxes, scores = [[A, B_OVER_A, C, D]], [[0.9, 0.8, 0.7, 0.6]]
    assert found_scores(crafted(boxes, scores)[0].detect([IMAGE])[0]) == [0.9, 0.7, 0.6]
    # only A and B reach NMS, and B is suppressed by A
    assert found_scores(crafted(boxes, scores, top_k=2)[0].detect([IMAGE])[0]) == [0.9]
    # NMS removes B first, then the two best survivors stay
    assert found_scores(crafted(boxes, scores, keep_top_k=2)[0].detect([IMAGE])[0]) == [0.9, 0.7]


def test_top_k_and_keep_top_k_count_per_image():
    boxes = [[A, C, D], [A, C, D]]
    scores = [[0.9, 0.8, 0.7], [0.3, 0.2, 0.1]]
    for option in ("top_k", "keep_top_k"):
        detector, _ = crafted(boxes, scores, **{option: 2})
        assert [found_scores(d) for d in detector.detect([IMAGE, IMAGE])] == [[0.9, 0.8], [0.3, 0.2]]


def test_nms_never_suppresses_across_images():
    detector, _ = crafted([[A], [B_OVER_A]], [[0.9], [0.8]])
    first, second = detector.detect([IMAGE, IMAGE])
    np.testing.assert_allclose(first.boxes, [[0, 0, 5, 5]])
    np.testing.assert_allclose(second.boxes, [[0.5, 0.5, 5.5, 5.5]])
    np.testing.assert_allclose(second.landmarks, [[0.5, 0.5, 5.5, 5.5] * 2 + [0.5, 0.5]])


def test_empty_results_have_the_right_shapes_and_skip_decoding():
    detector, calls = crafted([[A, C]], [[0.01, 0.02]])
    (found,) = detector.detect([IMAGE])
    assert len(found) == 0 and calls == []
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,) and found.landmarks.shape == (0, 10)
    assert found.wider_rows().shape == (0, 5) and len(found.above(0.5)) == 0
    assert detector.detect([]) == []


def test_detections_helpers():
    found = Detections(np.array([[10, 20, 40, 60], [0, 0, 5, 5]], np.float32), np.array([0.9, 0.3], np.float32),
                       np.arange(20, dtype=np.float32).reshape(2, 10))
    np.testing.assert_allclose(found.wider_rows(), [[10, 20, 30, 40, 0.9], [0, 0, 5, 5, 0.3]], rtol=1e-6)
    shown = found.above(0.9)
    assert len(shown) == 1 and shown.landmarks.shape == (1, 10)


def test_landmarks_are_optional():
    detector, _ = crafted([[A]], [[0.9]])
    detector.decode_landm_fn = None
    assert detector.detect([IMAGE])[0].landmarks is None
    loc, conf, _ = detector.model.outputs
    without = Detector(FixedModel(loc, conf), lambda size: torch.zeros(1, 4), lambda v, p, var: v,
                       lambda v, p, var: v, score_fn=lambda c: c[..., 1])
    (found,) = without.detect([IMAGE])
    assert found.landmarks is None and len(found) == 1


# -- priors cache, model mode, errors ----------------------------------------------------------------

def test_priors_are_computed_once_per_input_size():
    sizes_seen = []

    def counting_priors(size):
        sizes_seen.append(size)
        return grid_priors(size)

    detector = Detector(PatchModel(), counting_priors, decode, decode_landm, VARIANCES)
    small, wide = smooth_images(2, [(32, 32), (24, 48)])
    detector.detect([small])
    detector.detect([small])
    detector.detect([small, wide])        # padded to 32 x 48
    detector.detect([wide, small])
    assert sizes_seen == [(32, 32), (32, 48)]


def test_prior_cache_drops_the_least_recently_used_size():
    calls = []
    cache = PriorCache(lambda size: calls.append(size) or grid_priors(size), max_sizes=2)
    for size in [(8, 8), (16, 16), (8, 8), (24, 24), (8, 8), (16, 16)]:
        cache(size, torch.device("cpu"))
    assert calls == [(8, 8), (16, 16), (24, 24), (16, 16)]


def test_model_runs_in_eval_mode_and_keeps_its_mode():
    detector, _ = crafted([[A]], [[0.9]])
    detector.model.train()
    detector.detect([IMAGE])
    assert detector.model.ran_in_training_mode == [False] and detector.model.training


def test_input_errors_say_what_was_expected():
    detector = patch_detector()
    with pytest.raises(ValueError, match=r"image 1: expected a uint8 BGR array \[H, W, 3\], got float32"):
        detector.detect([IMAGE, IMAGE.astype(np.float32)])
    with pytest.raises(ValueError, match="image 0: .* shape \\(10, 10\\)"):
        detector.detect([IMAGE[..., 0]])
    wrong_priors = Detector(PatchModel(), lambda size: torch.zeros(5, 4), decode, decode_landm)
    with pytest.raises(ValueError, match="gives 5 priors"):
        wrong_priors.detect([IMAGE])
    bad_decode = Detector(PatchModel(), grid_priors, lambda loc, p, v: loc[:, :2], decode_landm, conf_thresh=0)
    with pytest.raises(ValueError, match=r"decode_fn returned shape \(\d+, 2\)"):
        bad_decode.detect([IMAGE])
    # a per-image postprocess_fn (RetinaFace's Part 8) must return (boxes, scores, landmarks)
    not_a_tuple = Detector(PatchModel(), grid_priors, decode, decode_landm,
                           postprocess_fn=lambda *args, **options: torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"postprocess_fn returned Tensor; expected a tuple"):
        not_a_tuple.detect([IMAGE])
    no_landmarks = Detector(PatchModel(), grid_priors, decode, decode_landm,
                            postprocess_fn=lambda *args, **options: (torch.zeros(2, 4), torch.zeros(2), None))
    with pytest.raises(ValueError, match=r"must return landmarks exactly when it is given landm"):
        no_landmarks.detect([IMAGE])
    for options in ({"conf_thresh": 1.5}, {"nms_thresh": -0.1}, {"top_k": 0}, {"keep_top_k": 0},
                    {"mean": (1, 2)}):
        with pytest.raises(ValueError):
            patch_detector(**options)


def test_softmax_face_scores_two_classes_and_more():
    conf = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    torch.testing.assert_close(softmax_face_scores(conf),
                               torch.tensor([[0.5, 1 / (1 + np.exp(-2.0))]], dtype=torch.float32))
    for classes in (2, 3):
        logits = torch.randn(2, 50, classes, generator=torch.Generator().manual_seed(classes)) * 4
        torch.testing.assert_close(softmax_face_scores(logits), logits.softmax(-1)[..., 1])
