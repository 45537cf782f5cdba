"""utils.evaluate: the WIDER FACE protocol rule by rule, against a slow loop reference, on the real
validation ground truth (skipped when ../shared/data is absent) and through the CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from data.wider_gt import WiderGroundTruth, load_wider_gt, save_wider_gt
from tests.reference_wider_eval import reference_evaluate
from tests.wider_eval_data import SHARED_GT_DIR, first_events, predictions_from_gt, random_ground_truth
from utils.evaluate import (THRESHOLD_COUNT, _iou_plus_one, evaluate, main, normalise_scores,
                            read_predictions, thresholds, voc_ap, write_predictions)
from utils.wider_predictions import read_prediction_file

needs_real_gt = pytest.mark.skipif(not (SHARED_GT_DIR / "wider_face_val.mat").is_file(),
                                   reason=f"official val ground truth not found in {SHARED_GT_DIR}")


@pytest.fixture(scope="module")
def real_gt() -> WiderGroundTruth:
    return load_wider_gt(SHARED_GT_DIR)


def quiet_evaluate(predictions, gt, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(predictions, gt, **kwargs)


def one_image_gt(faces, kept) -> WiderGroundTruth:
    """One event, one image: faces [k, 4] (x, y, w, h); kept: 0-based indices kept in 'hard'."""
    return many_images_gt([faces], [kept])


def many_images_gt(faces_per_image, kept_per_image) -> WiderGroundTruth:
    boxes = [np.asarray(f, dtype=np.float64).reshape(-1, 4) for f in faces_per_image]
    keep = [np.asarray(k, dtype=np.int64) + 1 for k in kept_per_image]
    names = [f"img_{i}" for i in range(len(boxes))]
    return WiderGroundTruth(["0--E"], [names], [boxes], {"hard": [keep]})


def preds(*per_image):
    """{'0--E': {'img_i': [k, 5]}} from rows (x, y, w, h, score) per image."""
    return {"0--E": {f"img_{i}": np.asarray(rows, dtype=np.float64).reshape(-1, 5)
                     for i, rows in enumerate(per_image)}}


def assert_same_as_reference(predictions, gt, iou_thresh=0.5):
    result = quiet_evaluate(predictions, gt, iou_thresh=iou_thresh)
    reference = reference_evaluate(predictions, gt, iou_thresh)
    assert result.ap.keys() == reference.keys()
    for setting, (ap, precision, recall) in reference.items():
        assert result.ap[setting] == pytest.approx(ap, abs=1e-9)
        np.testing.assert_allclose(result.curves[setting][0], precision, atol=1e-12)
        np.testing.assert_allclose(result.curves[setting][1], recall, atol=1e-12)
    return result


# ---------------------------------------------------------------- the rules, one hand-built case each

def test_iou_uses_plus_one_pixels_and_matches_at_exactly_half():
    gt = one_image_gt([[0, 0, 3, 0]], [0])             # spans 4 x 1 pixels
    hit = preds([[0, 0, 1, 0, 1.0]])                     # 2 x 1 inside it: IoU exactly 0.5
    assert quiet_evaluate(hit, gt).curves["hard"][1][-1] == 1.0
    assert quiet_evaluate(hit, gt, iou_thresh=0.5001).curves["hard"][1][-1] == 0.0
    shifted = one_image_gt([[0, 0, 10, 10]], [0])        # IoU 0.52 with +1, 0.48 without
    assert quiet_evaluate(preds([[3.5, 0, 10, 10, 1.0]]), shifted).ap["hard"] == 1.0


def test_iou_plus_one_is_pixel_counting_on_integer_boxes():
    # With the +1 convention an integer box (x1, y1, x2, y2) covers pixels x1..x2, y1..y2 inclusive.
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 30, (50, 4)).astype(np.float64)
    boxes = np.column_stack([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])])
    grid_y, grid_x = np.mgrid[0:30, 0:30]
    masks = np.stack([(grid_x >= x1) & (grid_x <= x2) & (grid_y >= y1) & (grid_y <= y2)
                      for x1, y1, x2, y2 in boxes])                                  # [50, 30, 30]
    inter = (masks[:30, None] & masks[None, 30:]).sum((2, 3))
    union = (masks[:30, None] | masks[None, 30:]).sum((2, 3))
    np.testing.assert_allclose(_iou_plus_one(boxes[:30], boxes[30:]), inter / union, rtol=1e-12)


def test_prediction_on_ignored_face_is_neither_true_nor_false_positive():
    gt = one_image_gt([[0, 0, 20, 20], [100, 100, 20, 20]], kept=[0])
    result = quiet_evaluate(preds([[100, 100, 20, 20, 1.0], [0, 0, 20, 20, 0.0]]), gt)
    precision, recall = result.curves["hard"]
    assert result.ap["hard"] == 1.0
    assert (precision == 1.0).all() and recall[-1] == 1.0 and recall[0] == 0.0


def test_second_prediction_on_a_recalled_face_is_a_false_positive():
    gt = one_image_gt([[0, 0, 20, 20]], kept=[0])
    precision, recall = quiet_evaluate(preds([[0, 0, 20, 20, 1.0], [1, 1, 20, 20, 0.0]]), gt).curves["hard"]
    assert precision[0] == 1.0 and precision[-1] == 0.5
    assert recall[0] == 1.0 and recall[-1] == 1.0


def test_prediction_goes_to_its_highest_iou_face_even_when_recalled():
    # IoU 0.83 with face A (already recalled), 0.57 with face B: a false positive, B stays missed.
    gt = one_image_gt([[0, 0, 10, 10], [4, 0, 10, 10]], kept=[0, 1])
    precision, recall = quiet_evaluate(preds([[0, 0, 10, 10, 1.0], [1, 0, 10, 10, 0.0]]), gt).curves["hard"]
    assert recall[-1] == 0.5 and precision[-1] == 0.5


def test_highest_iou_face_ignored_means_prediction_ignored_even_if_a_kept_face_overlaps():
    gt = one_image_gt([[0, 0, 10, 10], [4, 0, 10, 10]], kept=[1])
    result = quiet_evaluate(preds([[1, 0, 10, 10, 1.0], [500, 500, 5, 5, 0.0]]), gt)
    precision, recall = result.curves["hard"]
    assert (recall == 0).all() and result.ap["hard"] == 0.0
    assert precision[0] == 1.0 and precision[-1] == 0.0   # no proposal: 1; then one false positive


def test_predictions_are_taken_in_descending_score_order():
    gt = one_image_gt([[0, 0, 20, 20]], kept=[0])
    file_order = preds([[1, 1, 20, 20, 0.2], [0, 0, 20, 20, 0.9]])   # the better one comes last
    result = assert_same_as_reference(file_order, gt)
    assert result.ap["hard"] == 1.0       # in file order (the official script) it would be 0.5


def test_thresholds_are_inclusive_and_counts_sum_over_images():
    gt = many_images_gt([[[0, 0, 20, 20]], [[0, 0, 20, 20]], [[0, 0, 20, 20]]], [[0], [0], [0]])
    predictions = preds([[0, 0, 20, 20, 1.0], [300, 300, 9, 9, 0.0]],   # a hit and a false positive
                        [[0, 0, 20, 20, 0.5]])                          # image 2: hit at 0.5 exactly
    precision, recall = quiet_evaluate(predictions, gt).curves["hard"]  # image 3: no predictions
    levels = thresholds()
    assert levels[0] == 0.999 and levels[499] == 0.5 and levels[-1] == 0.0
    assert recall[498] == pytest.approx(1 / 3) and recall[499] == pytest.approx(2 / 3)
    assert precision[998] == 1.0 and precision[999] == pytest.approx(2 / 3)
    assert voc_ap(recall, precision) == pytest.approx(2 / 3)


def test_predictions_on_images_without_faces_are_not_counted():
    gt = many_images_gt([[[0, 0, 20, 20]], np.zeros((0, 4))], [[0], []])
    alone = preds([[0, 0, 20, 20, 1.0], [50, 50, 8, 8, 0.0]], [])
    with_faceless = preds([[0, 0, 20, 20, 1.0], [50, 50, 8, 8, 0.0]], [[5, 5, 10, 10, 0.7]])
    np.testing.assert_array_equal(quiet_evaluate(alone, gt).curves["hard"][0],
                                  quiet_evaluate(with_faceless, gt).curves["hard"][0])


def test_voc_all_point_ap_known_answer():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 0.5, 0.8, 0.4])
    assert voc_ap(recall, precision) == pytest.approx(0.2 * 1.0 + 0.2 * 0.8 + 0.4 * 0.4)


# ---------------------------------------------------------------- normalisation and degenerate inputs

def test_scores_are_min_max_normalised_as_the_official_code_does():
    (out,), equal = normalise_scores([np.array([0.2, 0.6, 0.4])])
    np.testing.assert_allclose(out, [0.0, 1.0, 0.5])
    assert not equal
    (out,), _ = normalise_scores([np.array([3.0, 5.0])])        # running min starts at 1
    np.testing.assert_allclose(out, [0.5, 1.0])
    first, second = normalise_scores([np.array([-2.0]), np.array([2.0, 0.0])])[0]
    np.testing.assert_allclose(np.concatenate([first, second]), [0.0, 1.0, 0.5])


def test_ap_is_invariant_to_an_affine_map_of_scores_inside_zero_one():
    gt = random_ground_truth(3)
    predictions = predictions_from_gt(gt, 3, score_decimals=None)
    squeezed = {ev: {n: np.column_stack([d[:, :4], 0.25 + 0.5 * d[:, 4]]) for n, d in ims.items()}
                for ev, ims in predictions.items()}
    a, b = quiet_evaluate(predictions, gt), quiet_evaluate(squeezed, gt)
    for setting in a.ap:
        assert a.ap[setting] == pytest.approx(b.ap[setting], abs=1e-12)


def test_all_equal_scores_give_one_operating_point_with_a_warning():
    gt = one_image_gt([[0, 0, 20, 20], [100, 0, 20, 20]], kept=[0, 1])
    with pytest.warns(UserWarning, match="all prediction scores are equal"):
        result = evaluate(preds([[0, 0, 20, 20, 0.7], [300, 0, 20, 20, 0.7]]), gt)
    precision, recall = result.curves["hard"]
    assert (precision == 0.5).all() and (recall == 0.5).all()
    assert result.ap["hard"] == pytest.approx(0.25)


def test_no_predictions_give_ap_zero_with_a_warning():
    gt = random_ground_truth(0)
    with pytest.warns(UserWarning, match="no predictions"):
        result = evaluate({}, gt)
    for setting, (precision, recall) in result.curves.items():
        assert result.ap[setting] == 0.0
        assert np.isfinite(precision).all() and (recall == 0).all()
    assert len(result.missing_images) == gt.num_images()


def test_missing_and_unknown_images_are_counted_and_warned():
    gt = random_ground_truth(1, events=2, images=4)
    predictions = predictions_from_gt(gt, 1)
    del predictions[gt.events[0]][gt.images[0][1]]
    predictions[gt.events[1]]["not_in_gt"] = np.array([[0, 0, 10, 10, 5.0]])   # max score
    with pytest.warns(UserWarning) as record:
        result = evaluate(predictions, gt)
    assert result.missing_images == [f"{gt.events[0]}/{gt.images[0][1]}"]
    assert result.unknown_images == [f"{gt.events[1]}/not_in_gt"]
    messages = " ".join(str(w.message) for w in record)
    assert "1 of 8 ground-truth images have no predictions" in messages and "not_in_gt" in messages
    assert_same_as_reference(predictions, gt)   # its score 5 still stretches the normalisation


def test_setting_without_kept_faces_raises():
    with pytest.raises(ValueError, match="keeps no face"):
        evaluate(preds([[0, 0, 5, 5, 1.0]]), one_image_gt([[0, 0, 5, 5]], kept=[]))


def test_bad_prediction_arrays_and_threshold_raise():
    gt = one_image_gt([[0, 0, 5, 5]], kept=[0])
    with pytest.raises(ValueError, match="0--E/img_0.*\\[k, 5\\]"):
        evaluate({"0--E": {"img_0": np.zeros((2, 4))}}, gt)
    with pytest.raises(ValueError, match="iou_thresh"):
        evaluate({}, gt, iou_thresh=0.0)


# ---------------------------------------------------------------- against the slow loop reference

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_thresh", [0.3, 0.5, 0.7])
def test_matches_loop_reference_on_generated_ground_truth(seed, iou_thresh):
    gt = random_ground_truth(seed)
    predictions = predictions_from_gt(gt, seed, integer_boxes=seed != 1, score_decimals=[3, None, 1][seed])
    original = {ev: {n: d.copy() for n, d in ims.items()} for ev, ims in predictions.items()}
    assert_same_as_reference(predictions, gt, iou_thresh)
    for ev, ims in original.items():               # the caller's arrays are left untouched
        for n, d in ims.items():
            np.testing.assert_array_equal(predictions[ev][n], d)


@needs_real_gt
def test_matches_loop_reference_on_real_val_events(real_gt):
    gt = first_events(real_gt, 3)     # the whole set is compared by bench/evaluate.py
    assert_same_as_reference(predictions_from_gt(gt, 0), gt)


@needs_real_gt
def test_ground_truth_as_predictions_scores_ap_one_when_every_face_is_kept(real_gt):
    boxes, keep, predictions = [], [], {}
    rng = np.random.default_rng(0)
    for e, event in enumerate(real_gt.events):
        boxes.append([])
        for name, faces in zip(real_gt.images[e], real_gt.boxes[e]):
            # a face with negative width overlaps nothing, a duplicate can be recalled only once
            _, first = np.unique(faces, axis=0, return_index=True)
            faces = faces[np.sort(first)]
            faces = faces[(faces[:, 2:] >= 0).all(axis=1)]
            boxes[e].append(faces)
            predictions.setdefault(event, {})[name] = np.column_stack([faces, rng.random(len(faces))])
    keep = {s: [[np.arange(1, len(f) + 1) for f in per_event] for per_event in boxes]
            for s in ("easy", "medium", "hard")}
    result = evaluate(predictions, WiderGroundTruth(real_gt.events, real_gt.images, boxes, keep))
    assert result.ap == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0}, abs=1e-12)
    assert result.num_faces["hard"] > 39000 and not result.missing_images


@needs_real_gt
def test_official_subsets_with_ground_truth_as_predictions(real_gt):
    predictions = {ev: {n: np.column_stack([b, np.linspace(1, 0, len(b))])
                        for n, b in zip(real_gt.images[e], real_gt.boxes[e])}
                   for e, ev in enumerate(real_gt.events)}
    result = evaluate(predictions, real_gt)
    assert result.num_faces == {"easy": 7211, "medium": 13319, "hard": 31958}
    # each kept face is recalled except, in hard only, one of width -2 (overlaps nothing) and
    # the second of two identical faces (its prediction goes to the first one)
    assert result.curves["easy"][1][-1] == 1.0 and result.curves["medium"][1][-1] == 1.0
    assert result.curves["hard"][1][-1] == pytest.approx(31956 / 31958)


# ---------------------------------------------------------------- submission files and the CLI

def test_write_then_read_predictions_round_trips_exactly(tmp_path):
    dets = np.random.default_rng(0).uniform(0, 500, (7, 5))
    write_predictions(tmp_path, "0--E", "img_0.jpg", dets)
    write_predictions(tmp_path, "0--E", "img_1", np.zeros((0, 5)))
    read = read_predictions(tmp_path)
    np.testing.assert_array_equal(read["0--E"]["img_0"], dets)
    assert read["0--E"]["img_1"].shape == (0, 5)


@pytest.mark.parametrize("text, where", [
    ("", ":1:"),
    ("other\n1\n1 2 3 4 0.5\n", ":1:"),
    ("img_0\n", ":2:"),
    ("img_0\ntwo\n", ":2:"),
    ("img_0\n2\n1 2 3 4 0.5\n", ":2:"),
    ("img_0\n2\n1 2 3 4 0.5\n1 2 3 4\n", ":4:"),
    ("img_0\n1\n1 2 x 4 0.5\n", ":3:"),
    ("img_0\n2\n1 2 3 4 0.5\n\n1 2 3 4 nan\n", ":5:"),
])
def test_malformed_prediction_file_names_file_and_line(tmp_path, text, where):
    path = tmp_path / "img_0.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"img_0.txt{where}"):
        read_prediction_file(path)


def test_official_file_layout_is_read(tmp_path):
    path = tmp_path / "img_0.txt"      # as the RetinaFace test script writes it: trailing spaces
    path.write_text("0--E/img_0.jpg\n2\n1 2 3 4 0.9 \n5 6 7 8 0.1 \n\n")
    name, dets = read_prediction_file(path)
    assert name == "img_0"
    np.testing.assert_array_equal(dets, [[1, 2, 3, 4, 0.9], [5, 6, 7, 8, 0.1]])


def test_stray_files_in_submission_are_counted(tmp_path):
    write_predictions(tmp_path, "0--E", "img_0", np.zeros((0, 5)))
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "0--E" / "img_0.png").write_text("x")
    with pytest.warns(UserWarning, match="skipped 2 entries"):
        read_predictions(tmp_path)


def test_cli_prints_aps_json_and_plot(tmp_path, capsys):
    gt = random_ground_truth(4, events=2, images=5)
    save_wider_gt(gt, tmp_path / "gt")
    predictions = predictions_from_gt(gt, 4)
    for event, per_image in predictions.items():
        for name, dets in per_image.items():
            write_predictions(tmp_path / "pred", event, name, dets)
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    assert main(argv + ["--json", "--plot", str(tmp_path / "pr.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["Easy AP", "Medium AP", "Hard AP"]
    expected = quiet_evaluate(predictions, gt).ap
    assert json.loads(lines[-1]) == pytest.approx(expected, abs=1e-15)
    assert (tmp_path / "pr.png").stat().st_size > 0
    (tmp_path / "pred" / gt.events[0] / f"{gt.images[0][0]}.txt").write_text("broken\n")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"{gt.images[0][0]}.txt:1:" in capsys.readouterr().err


def test_thresholds_are_the_official_ones():
    levels = thresholds()
    assert levels.shape == (THRESHOLD_COUNT,)
    assert all(levels[t] == 1 - (t + 1) / THRESHOLD_COUNT for t in range(THRESHOLD_COUNT))
