"""RetinaFace augmentation: geometry follows the pixels, mirror swaps sides, flags survive."""
import cv2
import numpy as np
import pytest
import torch

from data.augment import (BGR_MEAN, CROP_SCALES, EvalTransform, TrainAugment, mirror,
                          pad_to_square, photometric_distort, random_square_crop)
from data.labels import write_labels
from data.widerface import WiderFaceDataset, detection_collate

SEEDS = range(40)


def random_faces(rng, width, height, n, absent_share=0.3):
    """Upright faces ``[n, 15]`` inside the image; some without landmarks."""
    t = np.full((n, 15), -1, np.float32)
    size = rng.uniform(20, 70, n)
    x1 = rng.uniform(0, width - size)
    y1 = rng.uniform(0, height - size * 1.2)
    t[:, 0], t[:, 1], t[:, 2], t[:, 3] = x1, y1, x1 + size, y1 + size * 1.2
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    lm = np.stack([x1[:, None] + rel[:, 0] * size[:, None],
                   y1[:, None] + rel[:, 1] * size[:, None] * 1.2], axis=2)  # [n, 5, 2]
    t[:, 4:14] = lm.reshape(n, 10)
    t[:, 14] = 1
    absent = rng.random(n) < absent_share
    t[absent, 4:15] = -1
    return t


def marker_image(targets, width, height, radius=3):
    image = np.zeros((height, width, 3), np.uint8)
    for row in targets[targets[:, 14] == 1]:
        for x, y in row[4:14].reshape(5, 2):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1)
    return image


@pytest.mark.parametrize("seed", SEEDS)
def test_marker_under_each_landmark_and_boxes_inside(seed):
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(250, 500)), int(rng.integers(250, 500))
    targets = random_faces(rng, width, height, int(rng.integers(1, 6)))
    image = marker_image(targets, width, height)
    size = 300
    out_image, out = TrainAugment(size)(image, targets, np.random.default_rng(seed + 1000))
    assert out_image.shape == (3, size, size) and out_image.dtype == torch.float32
    assert out.dtype == torch.float32 and out.shape[1] == 15
    out = out.numpy()
    assert ((out[:, :4] >= 0) & (out[:, :4] <= 1)).all()  # no box leaves the image
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    bright = (out_image + torch.tensor(BGR_MEAN).view(3, 1, 1)).mean(0).numpy()
    background = np.median(bright)
    for row in out[out[:, 14] == 1]:
        for x, y in row[4:14].reshape(5, 2) * size:
            if 4 <= x < size - 4 and 4 <= y < size - 4:
                patch = bright[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2]
                assert patch.max() > background + 40, (seed, x, y)


@pytest.mark.parametrize("seed", SEEDS)
def test_absent_landmarks_stay_absent_and_left_eye_stays_left(seed):
    rng = np.random.default_rng(seed)
    targets = random_faces(rng, 400, 300, 6, absent_share=0.5)
    out = TrainAugment(256)(np.zeros((300, 400, 3), np.uint8), targets, rng)[1].numpy()
    absent = out[:, 14] == -1
    assert (out[absent, 4:14] == -1).all()
    present = out[~absent, 4:14].reshape(-1, 5, 2)
    assert (present[:, 0, 0] < present[:, 1, 0]).all()  # l0 is the image-left eye, mirrored or not
    assert (present[:, 3, 0] < present[:, 4, 0]).all()
    assert set(np.unique(out[:, 14])) <= {-1.0, 1.0}


def test_same_rng_same_output_and_depends_on_seed():
    rng = np.random.default_rng(0)
    targets = random_faces(rng, 400, 300, 4)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    aug = TrainAugment(128)
    a = aug(image, targets, np.random.default_rng((1, 2, 3)))
    b = aug(image, targets, np.random.default_rng((1, 2, 3)))
    c = aug(image, targets, np.random.default_rng((1, 2, 4)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_mirror_twice_is_identity_and_swaps_pairs():
    rng = np.random.default_rng(3)
    targets = random_faces(rng, 320, 240, 8)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    once_image, once = mirror(image, targets)
    twice_image, twice = mirror(once_image, once)
    np.testing.assert_array_equal(twice_image, image)
    np.testing.assert_allclose(twice, targets, atol=1e-4)
    np.testing.assert_array_equal(once_image, image[:, ::-1])
    present = targets[:, 14] == 1
    np.testing.assert_allclose(once[present, 4], 320 - targets[present, 6])  # new l0 = old l1
    np.testing.assert_allclose(once[present, 10], 320 - targets[present, 12])  # new l3 = old l4
    np.testing.assert_allclose(once[present, 8], 320 - targets[present, 8])  # nose stays nose
    np.testing.assert_allclose(once[:, 0], 320 - targets[:, 2])


def test_crop_keeps_exactly_faces_with_centre_inside():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        targets = random_faces(rng, 500, 400, 10)
        image = np.zeros((400, 500, 3), np.uint8)
        crop, out, roi = random_square_crop(image, targets, rng)
        x0, y0, side = roi
        assert crop.shape == (side, side, 3) and side in {int(400 * s) for s in CROP_SCALES}
        expected = []
        for row in targets:  # loop reference
            cx, cy = (row[0] + row[2]) / 2, (row[1] + row[3]) / 2
            if x0 < cx < x0 + side and y0 < cy < y0 + side:
                r = row.copy()
                r[[0, 2]] = np.clip(r[[0, 2]] - x0, 0, side)
                r[[1, 3]] = np.clip(r[[1, 3]] - y0, 0, side)
                if r[14] == 1:
                    r[4:14:2] -= x0
                    r[5:14:2] -= y0
                expected.append(r)
        np.testing.assert_allclose(out, np.array(expected).reshape(-1, 15), atol=1e-4)
        whole = ((targets[:, 0] >= x0) & (targets[:, 2] <= x0 + side) &
                 (targets[:, 1] >= y0) & (targets[:, 3] <= y0 + side))
        assert whole.any()


def test_no_possible_crop_falls_back_to_padding():
    targets = np.full((1, 15), -1, np.float32)
    targets[0, :4] = [0, 0, 400, 200]  # wider than any square crop of a 400 x 200 image
    image = np.full((200, 400, 3), 7, np.uint8)
    crop, out, roi = random_square_crop(image, targets, np.random.default_rng(0))
    assert roi is None and crop is image
    padded = pad_to_square(image)
    assert padded.shape == (400, 400, 3)
    assert (padded[:200] == 7).all() and (padded[200:] == np.array(BGR_MEAN, np.uint8)).all()
    _, result = TrainAugment(100)(image, targets, np.random.default_rng(0))
    np.testing.assert_allclose(result[0, [1, 3]], [0.0, 0.5], atol=1e-6)
    assert np.isclose(result[0, 2] - result[0, 0], 1.0)


def test_image_without_faces_still_crops():
    image = np.zeros((300, 400, 3), np.uint8)
    crop, out, roi = random_square_crop(image, np.zeros((0, 15), np.float32), np.random.default_rng(1))
    assert roi is not None and out.shape == (0, 15)
    tensor, t = TrainAugment(64)(image, np.zeros((0, 15), np.float32), np.random.default_rng(1))
    assert tensor.shape == (3, 64, 64) and t.shape == (0, 15)


def test_photometric_distort_keeps_grey_grey_and_changes_colour():
    grey = np.full((20, 20, 3), 128, np.uint8)
    colour = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    changed = 0
    for seed in range(20):
        out = photometric_distort(grey, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and (np.ptp(out.astype(int), axis=2) <= 2).all()
        changed += not np.array_equal(photometric_distort(colour, np.random.default_rng(seed)), colour)
    assert changed >= 15


def test_eval_transform_subtracts_mean_and_keeps_targets():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (137, 153, 3), dtype=np.uint8)
    targets = random_faces(rng, 153, 137, 2)
    tensor, out = EvalTransform()(image, targets)
    expected = image.astype(np.float32).transpose(2, 0, 1) - np.array(BGR_MEAN, np.float32)[:, None, None]
    np.testing.assert_array_equal(tensor.numpy(), expected)
    np.testing.assert_array_equal(out.numpy(), targets)


def test_bad_inputs_raise_value_error():
    aug = TrainAugment(64)
    with pytest.raises(ValueError, match="uint8 BGR"):
        aug(np.zeros((10, 10, 3), np.float32), np.zeros((0, 15)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[n, 15\]"):
        aug(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 14)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="image_size"):
        TrainAugment(0)


def test_batches_identical_for_any_worker_count_and_epoch_dependent(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for k in range(6):
        targets = random_faces(rng, 320, 240, 3)
        path = tmp_path / "train" / "images" / "0--E" / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        entries.append((f"0--E/{k}.jpg", targets))
    write_labels(tmp_path / "train" / "label.txt", entries)

    def batches(workers, epoch):
        ds = WiderFaceDataset(tmp_path, "train", transform=TrainAugment(96), seed=11)
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers,
                                             collate_fn=detection_collate)
        return list(loader)

    serial, parallel, later = batches(0, 0), batches(2, 0), batches(0, 1)
    for (ia, ta), (ib, tb) in zip(serial, parallel):
        assert ia.shape == (3, 3, 96, 96)
        assert torch.equal(ia, ib) and all(torch.equal(x, y) for x, y in zip(ta, tb))
    assert not torch.equal(serial[0][0], later[0][0])
