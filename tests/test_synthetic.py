"""The embedded dataset: layout, determinism, labels that match the pixels, WIDER-format subsets."""
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.backgrounds import BackgroundBank
from data.face_model import FaceGeometry, sample_face_params
from data.face_render import render_person
from data.labels import read_labels
from data.scene import SCENE_KINDS, SceneFace, render_scene
from data.synthetic import (EVENTS, SUBSET_RULES, annotate, face_subsets, generate,
                            generate_split, main)
from data.wider_gt import SUBSETS, load_wider_gt
from data.widerface import WiderFaceDataset

TRAIN, VAL, SIZE = 6, 5, 256


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate(out, TRAIN, VAL, SIZE, seed=3, workers=1)
    return out, summary


def digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_labels_read_back(dataset):
    out, summary = dataset
    for split, count in (("train", TRAIN), ("val", VAL)):
        entries = read_labels(out / split / "label.txt")
        assert len(entries) == count
        for rel, targets in entries:
            event = rel.split("/")[0]
            assert event in EVENTS.values() and rel.endswith(".jpg")
            image = cv2.imread(str(out / split / "images" / rel))
            h, w = image.shape[:2]
            assert max(h, w) == SIZE
            assert targets.shape[1] == 15
            assert (targets[:, 0] >= 0).all() and (targets[:, 2] <= w).all()
            assert (targets[:, 1] >= 0).all() and (targets[:, 3] <= h).all()
            assert (targets[:, 3] - targets[:, 1] >= 6).all()
            present = targets[:, 14] == 1
            assert (targets[~present, 4:14] == -1).all()
            lm = targets[present, 4:14].reshape(-1, 5, 2)
            assert ((lm >= 0) & (lm < [w, h])).all()
        assert summary[split]["faces"] == sum(len(t) for _, t in entries)
    ds = WiderFaceDataset(out, "val")
    image, targets = ds[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and targets.dtype == np.float32


def test_ground_truth_matches_labels_and_subsets_nest(dataset):
    out, _ = dataset
    gt = load_wider_gt(out / "val" / "ground_truth")
    labels = {rel[:-4]: t for rel, t in read_labels(out / "val" / "label.txt")}
    assert gt.num_images() == VAL
    for e, event in enumerate(gt.events):
        for i, name in enumerate(gt.images[e]):
            targets = labels[f"{event}/{name}"]
            xywh = np.concatenate([targets[:, :2], targets[:, 2:4] - targets[:, :2]], 1)
            np.testing.assert_allclose(gt.boxes[e][i], xywh, atol=1e-3)
            easy, medium, hard = (set(gt.keep[s][e][i].tolist()) for s in SUBSETS)
            assert easy <= medium <= hard <= set(range(1, len(targets) + 1))
            heights = targets[:, 3] - targets[:, 1]
            for subset, keep in zip(SUBSETS, (easy, medium, hard)):
                assert all(heights[k - 1] >= SUBSET_RULES[subset][0] for k in keep)


def test_same_seed_gives_identical_bytes_any_worker_count(dataset, tmp_path):
    out, _ = dataset
    generate(tmp_path, TRAIN, VAL, SIZE, seed=3, workers=2)
    assert digest(tmp_path) == digest(out)
    generate_split(tmp_path, "train", TRAIN, SIZE, seed=4)
    assert digest(tmp_path / "train") != digest(out / "train")


def test_distractor_scale(tmp_path):
    results = generate_split(tmp_path, "train", 2, 128, seed=1, distractors=0.0)
    assert len(results) == 2 and len(read_labels(tmp_path / "train" / "label.txt")) == 2
    with pytest.raises(ValueError, match="distractors"):
        generate_split(tmp_path, "train", 2, 128, distractors=-1.0)


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not made by data.synthetic"):
        generate_split(tmp_path, "train", 1, SIZE)
    assert (tmp_path / "train" / "mine.txt").read_text() == "precious"


def test_cli_writes_layout(tmp_path, capsys):
    main(["--out", str(tmp_path), "--train", "2", "--val", "1", "--size", "128", "--workers", "1"])
    assert "images/s" in capsys.readouterr().out
    assert len(read_labels(tmp_path / "train" / "label.txt")) == 2
    assert (tmp_path / "val" / "ground_truth" / "wider_hard_val.mat").is_file()


def face(box, visible=1.0, blur=0, yaw=0.0, dark=False, landmarks=None):
    box = np.asarray(box, np.float64)
    if landmarks is None:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        landmarks = np.array([[cx - 5, cy - 5], [cx + 5, cy - 5], [cx, cy], [cx - 4, cy + 5],
                              [cx + 4, cy + 5]])
    return SceneFace(box, np.asarray(landmarks, np.float64), visible, blur, yaw, dark)


def test_annotation_rules_known_answers():
    faces = [
        face([10, 10, 60, 70]),                      # 60 px tall, clear: easy
        face([10, 10, 40, 40], blur=1),              # 30 px, normal blur: medium
        face([10, 10, 20, 22]),                      # 12 px: hard only
        face([10, 10, 15, 17]),                      # 7 px: labelled, in no subset, no landmarks
        face([10, 10, 14, 14]),                      # 4 px: not labelled
        face([10, 10, 60, 70], visible=0.1),         # hidden: not labelled
        face([-30, 10, 30, 70], visible=0.5),        # half outside: clipped, landmarks off
        face([10, 10, 60, 70], yaw=70),              # profile: not easy
    ]
    targets, subsets = annotate(faces, 100, 100)
    assert len(targets) == 6
    np.testing.assert_allclose(targets[4, :4], [0, 10, 30, 70])
    np.testing.assert_array_equal(targets[:, 14], [1, 1, 1, -1, -1, 1])
    assert subsets["easy"].tolist() == [True, False, False, False, False, False]
    assert subsets["medium"].tolist() == [True, True, False, False, True, True]
    assert subsets["hard"].tolist() == [True, True, True, False, True, True]


def test_subset_rule_is_nested_for_random_faces():
    rng = np.random.default_rng(0)
    for _ in range(500):
        f = face([0, 0, 10, 10], visible=rng.uniform(), blur=int(rng.integers(3)),
                 yaw=rng.uniform(-90, 90), dark=bool(rng.random() < 0.2))
        member = face_subsets(rng.uniform(5, 120), f)
        assert member["easy"] <= member["medium"] <= member["hard"]


def test_landmarks_land_on_painted_features():
    """The annotated eyes are dark-on-white eye pixels and the box holds the skin."""
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(40):
        p = sample_face_params(rng)
        if abs(p.yaw) > 0.5 or p.glasses or p.eyes_closed or p.mask:
            continue
        person = render_person(p, 120.0, (150.3, 140.6))
        s = person.sprite
        colour = s.colour / np.maximum(s.alpha[..., None], 1e-6)
        for x, y in person.landmarks[:2]:
            pixel = colour[int(round(y)) - s.y0, int(round(x)) - s.x0]
            assert pixel.mean() < 140  # iris or pupil, darker than skin or sclera around it
        x1, y1, x2, y2 = person.box
        inside = s.skin[int(y1) - s.y0 + 5:int(y2) - s.y0 - 5, int(x1) - s.x0 + 5:int(x2) - s.x0 - 5]
        assert inside.mean() > 0.6
        checked += 1
    assert checked >= 10


def test_geometry_mirror_symmetry_and_yaw_moves_nose_most():
    p = sample_face_params(np.random.default_rng(1))
    p.yaw, p.pitch, p.roll = 0.0, 0.0, 0.0
    lm = FaceGeometry(p).landmarks()
    np.testing.assert_allclose(lm[0] * [-1, 1], lm[1], atol=1e-9)
    np.testing.assert_allclose(lm[3] * [-1, 1], lm[4], atol=1e-9)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left first
    p.yaw = 0.5
    turned = FaceGeometry(p).landmarks()
    shift = np.abs(turned[:, 0] - lm[:, 0])
    assert shift[2] == shift.max()


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_every_scene_kind_renders(kind):
    bank = BackgroundBank(noise_size=400)
    image, faces = render_scene(np.random.default_rng(7), 320, bank, kind)
    assert image.dtype == np.uint8 and max(image.shape[:2]) == 320
    assert all(0 <= f.visible <= 1 for f in faces)
    with pytest.raises(ValueError, match="scene kind"):
        render_scene(np.random.default_rng(7), 320, bank, "beach")
