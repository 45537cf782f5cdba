"""The feedback names the classic mistakes: a head without the permute, anchors at the cells' corners,
matching without forcing. One submission carries the three wrong answers and is graded once, as a
TA would (``pytest autograder/`` in a subprocess); the feedback helpers are also checked directly.
"""
import pytest
import torch

from autograder.feedback import GradingFailure, expect_names, reordered
from tests.notebooks import copy_homework, grade, scores_by_unit, set_answer

BBOX_HEAD_WITHOUT_PERMUTE = """class BboxHead(nn.Module):
    def __init__(self, inchannels=512, num_anchors=2):
        super().__init__()
        self.conv1x1 = nn.Conv2d(inchannels, num_anchors * 4, kernel_size=1)

    def forward(self, x):
        out = self.conv1x1(x)
        return out.view(out.shape[0], -1, 4)
"""

PRIOR_BOX_AT_CORNERS = """class PriorBox:
    def __init__(self, cfg, image_size):
        self.min_sizes, self.steps, self.clip = cfg["min_sizes"], cfg["steps"], cfg["clip"]
        self.image_size = image_size
        self.feature_maps = [[math.ceil(image_size[0] / s), math.ceil(image_size[1] / s)] for s in self.steps]

    def forward(self):
        height, width = self.image_size
        anchors = []
        for (rows, cols), step, sizes in zip(self.feature_maps, self.steps, self.min_sizes):
            for i in range(rows):
                for j in range(cols):
                    for size in sizes:
                        anchors += [j * step / width, i * step / height, size / width, size / height]
        output = torch.tensor(anchors).view(-1, 4)
        return output.clamp(0, 1) if self.clip else output
"""

MATCH_WITHOUT_FORCING = """def match(threshold, truths, priors, variances, labels, landms, force_min_iou=0.2):
    num_priors = priors.shape[0]
    if truths.shape[0] == 0:
        return (priors.new_zeros(num_priors, 4), torch.zeros(num_priors, dtype=torch.long),
                priors.new_zeros(num_priors, 10))
    best_truth_overlap, best_truth_idx = jaccard(truths, point_form(priors)).max(dim=0)
    conf = labels[best_truth_idx].long()
    conf[best_truth_overlap < threshold] = 0
    return (encode(truths[best_truth_idx], priors, variances), conf,
            encode_landm(landms[best_truth_idx], priors, variances))
"""

WRONG_ANSWERS = {"2_model.ipynb": ("bbox_head", BBOX_HEAD_WITHOUT_PERMUTE),
                 "3_anchors.ipynb": ("prior_box", PRIOR_BOX_AT_CORNERS),
                 "4_matching_nms.ipynb": ("match", MATCH_WITHOUT_FORCING)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """results.json of the solutions with the three wrong answers above."""
    root = tmp_path_factory.mktemp("feedback")
    sub = copy_homework(root / "sub")
    for notebook, (grade_id, source) in WRONG_ANSWERS.items():
        set_answer(sub / "retinaface" / notebook, grade_id, source)
    results, output, _ = grade(sub, root / "results.json")
    assert results, f"results.json was not written:\n{output}"
    return results


def _feedback(results, test_name):
    matches = [t for t in results["tests"] if t["name"] == test_name]
    assert len(matches) == 1, [t["name"] for t in results["tests"]]
    return matches[0]


def test_head_without_permute_is_told_to_permute(graded):
    test = _feedback(graded, "bbox_head: [B, H*W*A, 4] rows: cell by cell, then anchor by anchor")
    assert test["score"] == 0
    assert "case '[2, 16, 3, 5] features, 2 anchors'" in test["output"]
    assert ("the rows are in the wrong order: permute the convolution's output to [B, H, W, C]"
            in test["output"])
    names = _feedback(graded, "bbox_head: one 1x1 convolution named conv1x1 with num_anchors*4 outputs")
    assert names["score"] == names["max_score"]  # the names are right; only the order is wrong


def test_anchors_at_corners_are_named(graded):
    test = _feedback(graded, "prior_box: 640 x 640: 16 800 anchors at the cell centres")
    assert test["score"] == 0
    assert "off by exactly half a stride" in test["output"]
    assert "(j + 0.5)·s / W" in test["output"] and "top-left corner" in test["output"]


def test_match_without_forcing_names_the_forced_anchor(graded):
    test = _feedback(graded, "match: forcing: each face's best anchor; the later face wins a shared one")
    assert test["score"] == 0
    assert "conf_t differs" in test["output"]
    assert "so face 1 forces it positive" in test["output"]
    threshold_only = _feedback(graded, "match: labels: IoU >= threshold is positive (1), the rest "
                                       "background (0)")
    assert threshold_only["score"] == threshold_only["max_score"]


def test_only_the_wrong_units_lose_points_and_their_callers_are_charged_once(graded):
    scores = scores_by_unit(graded)
    for unit, (score, max_score) in scores.items():
        if unit not in ("bbox_head", "prior_box", "match"):  # the callers are graded again with the reference
            assert score == max_score > 0, (unit, scores)
    forward = _feedback(graded, "retinaface: forward: (loc [B, P, 4], conf [B, P, 2], landm [B, P, 10])")
    assert "graded with the reference bbox_head, since your bbox_head fails its own checks" in forward["output"]
    names = _feedback(graded, "retinaface: state_dict names of the public checkpoint (mobilenet0.25)")
    assert names["score"] == names["max_score"]


def test_expect_names_groups_missing_and_unexpected_names():
    expected = [f"body.stage1.{k}.weight" for k in range(5)] + ["ssh1.conv.weight", "fpn.output1.weight"]
    received = [f"backbone.stage1.{k}.weight" for k in range(5)] + ["ssh1.conv.weight", "fpn.output1.weight"]
    with pytest.raises(GradingFailure) as err:
        expect_names(received, expected, "names case")
    message = str(err.value)
    assert "case 'names case'" in message
    assert "missing 5: body.* (5 names, e.g. body.stage1.0.weight)" in message
    assert "unexpected 5: backbone.* (5 names, e.g. backbone.stage1.0.weight)" in message
    expect_names(list(reversed(expected)), expected, "any order is fine")


def test_reordered_tells_a_permutation_from_wrong_values():
    values = torch.arange(24.0).reshape(2, 3, 4)
    assert reordered(values.permute(0, 2, 1).reshape(2, 3, 4), values)
    assert not reordered(values, values)
    assert not reordered(values + 1, values)
    assert not reordered(values.reshape(2, 4, 3), values)  # another shape is a shape error instead
