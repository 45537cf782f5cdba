"""The fast model answers of notebook 4 give exactly the straightforward answers: the block-wise
``nms`` the indices of torchvision.ops.nms (whatever the block size), and the optional
``match_batch`` bit for bit the per-image ``match``, on the edge cases a student's batch has."""
import pytest
import torch
import torchvision

from detector.retinaface.config import cfg_mnet
from tests.notebooks import REPO_ROOT
from utils.notebook import load_notebook

SOLUTIONS = REPO_ROOT / "solutions" / "retinaface"


@pytest.fixture(scope="module")
def nb():
    return load_notebook(SOLUTIONS / "4_matching_nms.ipynb")


@pytest.fixture(scope="module")
def priors():
    return load_notebook(SOLUTIONS / "3_anchors.ipynb").PriorBox(cfg_mnet, (96, 96)).forward()


def random_dets(n, seed, levels=5):
    """[n, 5] boxes up to 30 px in a 100 px image; scores take ``levels`` values, so ties abound."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30
    return torch.cat([xy, xy + wh, torch.randint(levels, (n, 1), generator=g) / levels], dim=1)


NMS_INPUTS = {
    "empty": torch.zeros(0, 5),
    "one box": torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.5]]),
    "all the same box (all but one suppressed)": torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.5]] * 5),
    "IoU exactly float32(0.4): torchvision compares in float64": torch.tensor(
        [[0.0, 0.0, 10.0, 10.0, 0.9], [0.0, 0.0, 4.0, 10.0, 0.8]]),
    "zero-area boxes (IoU 0 / 0)": torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5]] * 3 + [[1.0, 1.0, 1.0, 1.0, 0.5]]),
    "300 boxes, tied scores": random_dets(300, 0),
    "700 boxes, float64": random_dets(700, 1, levels=1000).double(),
}


@pytest.mark.parametrize("block", [1, 3, 64, 1000])
@pytest.mark.parametrize("name", list(NMS_INPUTS))
def test_nms_gives_torchvisions_indices(nb, monkeypatch, name, block):
    monkeypatch.setitem(nb.nms.__globals__, "NMS_BLOCK", block)
    dets = NMS_INPUTS[name]
    for thresh in (0.0, 0.3, 0.4, 0.5, 0.7, 1.0):
        got = nb.nms(dets, thresh)
        assert got.dtype == torch.long
        assert torch.equal(got, torchvision.ops.nms(dets[:, :4], dets[:, 4], thresh)), (name, thresh)


def faces(n, seed, image=96, smallest=2.0):
    """[n, 15] targets as MultiBoxLoss gets them: boxes from ``smallest`` to 40 px (the smallest
    below the forcing floor), landmarks inside, flag 1 or -1."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 0.9
    side = (smallest + torch.rand(n, 1, generator=g) * 38) / image
    boxes = torch.cat([xy, (xy + side).clamp(max=1.0)], dim=1)
    landmarks = xy.repeat(1, 5) + torch.rand(n, 10, generator=g) * side
    flags = torch.where(torch.rand(n, generator=g) < 0.7, 1.0, -1.0)
    return torch.cat([boxes, landmarks, flags[:, None]], dim=1)


def tiny_faces(n, seed):
    """[n, 15] faces of 3 x 3 pixels: IoU < 0.2 with every anchor, so none forces one."""
    t = faces(n, seed)
    t[:, 2:4] = t[:, :2] + 3 / 96
    assert (torchvision.ops.box_iou(t[:, :4], anchor_corners()).amax() < cfg_mnet["force_match_min_iou"])
    return t


def anchor_corners():
    anchors = load_notebook(SOLUTIONS / "3_anchors.ipynb").PriorBox(cfg_mnet, (96, 96)).forward()
    return torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], dim=1)


def shared_anchor_faces():
    """Two faces whose best anchor is the same one (the autograder's case), and a third elsewhere."""
    boxes = torch.tensor([[12.3, 11.8, 27.6, 28.1], [12.9, 12.4, 28.2, 27.7], [50.0, 52.0, 80.0, 90.0]]) / 96
    return torch.cat([boxes, boxes.repeat(1, 3)[:, :10], torch.tensor([[1.0], [-1.0], [1.0]])], dim=1)


BATCHES = {
    "random images, some without faces": lambda: [faces(5, 0), faces(0, 1), faces(12, 2), faces(1, 3),
                                                  faces(0, 4)],
    "no face in any image": lambda: [faces(0, 5), faces(0, 6)],
    "one image": lambda: [faces(7, 7)],
    "tiny faces, all below the forcing floor": lambda: [tiny_faces(4, 8), faces(2, 11)],
    "two faces share their best anchor": lambda: [faces(3, 9), shared_anchor_faces(), faces(0, 10)],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(BATCHES))
def test_match_batch_is_match_per_image(nb, priors, name, dtype):
    targets = [t.to(dtype) for t in BATCHES[name]()]
    priors = priors.to(dtype)
    thresh, variances = cfg_mnet["overlap_thresh"], cfg_mnet["variance"]
    for force in (cfg_mnet["force_match_min_iou"], 0.0, 1.5):
        one_by_one = [nb.match(thresh, t[:, :4], priors, variances, t[:, 14], t[:, 4:14], force) for t in targets]
        batched = nb.match_batch(thresh, targets, priors, variances, force)
        for got, parts in zip(batched, zip(*one_by_one)):
            want = torch.stack(parts)
            assert got.dtype == want.dtype and torch.equal(got, want), (name, force)


def test_the_shared_anchor_goes_to_the_later_face_in_the_batch_too(nb, priors):
    thresh, variances = cfg_mnet["overlap_thresh"], cfg_mnet["variance"]
    targets = [faces(3, 9), shared_anchor_faces()]
    _, conf, _ = nb.match_batch(thresh, targets, priors, variances, cfg_mnet["force_match_min_iou"])
    faces_iou = nb.jaccard(targets[1][:2, :4], nb.point_form(priors))
    shared = faces_iou.argmax(dim=1)
    assert shared[0] == shared[1]
    assert conf[1, shared[0]] == -1            # face 1's flag: the later face won the anchor
