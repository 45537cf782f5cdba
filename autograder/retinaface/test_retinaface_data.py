"""Grading of the RetinaFace homework, Parts 1 and 3 (``1_data.ipynb``): statistics of the data
and the dataset class. Oracles: numpy's histogram2d, torchvision's box_iou and direct formulas."""
import numpy as np
import torch
import torchvision

from autograder.retinaface import cases_data as cases
from autograder.feedback import GradingFailure, describe, expect_close, expect_equal, expect_type
from autograder.grading import graded
from autograder.units import case_names

HW = "retinaface"
STAT_KEYS = ("faces", "mean_width", "mean_height", "mean_area")


def _number(value, case, what):
    """A Python or 0-d tensor/array number as a float, or a clear failure."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.item())
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    raise GradingFailure(f"case '{case}': {what} should be a number, got {describe(value)}")


def _expect_number(got, want, case, what, tol=1e-4):
    got = _number(got, case, what)
    if abs(got - want) > tol * max(1.0, abs(want)):
        raise GradingFailure(f"case '{case}': {what} is {got:.6g}, expected {want:.6g}")


# -- 1.1 face_stats -------------------------------------------------------------------------------
def _stats_oracle(annotations):
    boxes = torch.cat([a[:, :4] for a in annotations]).double()
    if len(boxes) == 0:
        return dict.fromkeys(STAT_KEYS, 0.0)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return {"faces": float(len(boxes)), "mean_width": w.mean().item(), "mean_height": h.mean().item(),
            "mean_area": (w * h).mean().item()}


def _check_stats(submission, names):
    for name in names:
        got = submission.output("face_stats", name)
        expect_type(got, dict, name)
        missing = [k for k in STAT_KEYS if k not in got]
        if missing:
            raise GradingFailure(f"case '{name}': the dict has no {missing}; keys are {sorted(got)}")
        want = _stats_oracle(submission.inputs("face_stats", name)["annotations"])
        for key in STAT_KEYS:
            _expect_number(got[key], want[key], name, f"'{key}'")


@graded("face_stats", 1, "counts faces and averages width, height and area")
def test_face_stats(submission):
    _check_stats(submission, case_names(cases.STATS_CASES))


@graded("face_stats", 1, "a larger dataset (hidden)", public=False)
def test_face_stats_hidden(submission):
    _check_stats(submission, case_names(cases.STATS_CASES, public=False))


# -- 1.2 centre_heatmap ---------------------------------------------------------------------------
def _heatmap_oracle(x):
    rows, cols = [], []
    for boxes, (w, h) in zip(x["annotations"], x["image_sizes"].tolist()):
        cols += ((boxes[:, 0] + boxes[:, 2]).double() / 2 / w).tolist()
        rows += ((boxes[:, 1] + boxes[:, 3]).double() / 2 / h).tolist()
    heat, _, _ = np.histogram2d(rows, cols, bins=x["bins"], range=[[0, 1], [0, 1]])
    return torch.from_numpy(heat)


def _check_heatmap(submission, names):
    for name in names:
        want = _heatmap_oracle(submission.inputs("centre_heatmap", name))
        got = submission.output("centre_heatmap", name)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.equal(got.double().T, want) \
                and not torch.equal(want, want.T):
            raise GradingFailure(f"case '{name}': rows and columns are swapped: row r must count "
                                 f"normalised y, column c normalised x")
        expect_close(got, want, name, what="heatmap", check_dtype=False, atol=1e-6, rtol=0)


@graded("centre_heatmap", 2, "histogram of normalised centres (rows = y, columns = x)")
def test_centre_heatmap(submission):
    _check_heatmap(submission, case_names(cases.HEATMAP_CASES))


@graded("centre_heatmap", 1, "boxes outside the image, 16 bins (hidden)", public=False)
def test_centre_heatmap_hidden(submission):
    _check_heatmap(submission, case_names(cases.HEATMAP_CASES, public=False))


# -- 1.3 out_of_range -----------------------------------------------------------------------------
@graded("out_of_range", 2, "counts boxes reaching past any image border")
def test_out_of_range(submission):
    for case in cases.OUT_OF_RANGE_CASES:
        x = submission.inputs("out_of_range", case.name)
        want = sum(int(((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)).sum())
                   for b, (w, h) in zip(x["annotations"], x["image_sizes"].tolist()))
        _expect_number(submission.output("out_of_range", case.name), want, case.name, "the count", tol=0)


# -- 1.4 overlap_fraction -------------------------------------------------------------------------
@graded("overlap_fraction", 2, "percentage of faces with IoU > 0 with another face")
def test_overlap_fraction(submission):
    for case in cases.OVERLAP_CASES:
        x = submission.inputs("overlap_fraction", case.name)
        total = sum(len(b) for b in x["annotations"])
        hits = 0
        for b in x["annotations"]:
            iou = torchvision.ops.box_iou(b[:, :4], b[:, :4]).fill_diagonal_(0)
            hits += int((iou > 0).any(dim=1).sum())
        want = 100.0 * hits / total if total else 0.0
        got = submission.output("overlap_fraction", case.name)
        if total and abs(_number(got, case.name, "the percentage") - want / 100) < 1e-6 and want > 1:
            raise GradingFailure(f"case '{case.name}': {got} is a fraction; return a percentage (× 100)")
        _expect_number(got, want, case.name, "the percentage")


# -- Part 3: the dataset --------------------------------------------------------------------------
def _dataset_reference(submission, name):
    return submission.output("widerface_dataset", name), submission.reference("widerface_dataset", name)


@graded("widerface_dataset", 2, "__init__ reads image paths and face lines from label.txt")
def test_dataset_init(submission):
    name = cases.DATASET_CASES[0].name
    got, want = _dataset_reference(submission, name)
    if got["len"] != want["len"]:
        raise GradingFailure(f"case '{name}': len(dataset) is {got['len']}, expected {want['len']} "
                             f"(one item per '# path' line, also for images without faces)")
    if got["paths"] != want["paths"]:
        raise GradingFailure(f"case '{name}': imgs_path (relative to label.txt's folder) is "
                             f"{got['paths']}, expected {want['paths']} (images live in images/)")
    if got["words"] != want["words"]:
        bad = next(i for i, (g, w) in enumerate(zip(got["words"], want["words"])) if g != w)
        raise GradingFailure(f"case '{name}': words[{bad}] is {got['words'][bad]}, expected "
                             f"{want['words'][bad]} (every number of each face line, as floats)")


def _check_targets(got, want, name):
    if len(got["targets"]) != len(want["targets"]):
        raise GradingFailure(f"case '{name}': the dataset has {len(got['targets'])} items, expected "
                             f"{len(want['targets'])}")
    for i, (g, w) in enumerate(zip(got["targets"], want["targets"])):
        if isinstance(g, np.ndarray):
            g = torch.from_numpy(g)
        w = torch.as_tensor(w)
        what = f"target of image {i}"
        if isinstance(g, torch.Tensor) and g.shape == w.shape and w.numel():
            flag_wrong = g[:, 14] != w[:, 14]
            if flag_wrong.any():
                row = int(torch.nonzero(flag_wrong)[0])
                raise GradingFailure(f"case '{name}': {what}, face {row}: landmark flag is "
                                     f"{g[row, 14].item():g}, expected {w[row, 14].item():g} (1 with "
                                     f"landmarks, -1 without: -1 in the file or only x y w h)")
        expect_close(g, w, name, what=what, atol=1e-4)


@graded("widerface_dataset", 3, "__getitem__ builds the [n, 15] target with the landmark flag")
def test_dataset_getitem(submission):
    name = cases.DATASET_CASES[0].name
    got, want = _dataset_reference(submission, name)
    for i, (g, w) in enumerate(zip(got["images"], want["images"])):
        if not isinstance(g, np.ndarray) or g.shape != w.shape or g.dtype != np.uint8:
            raise GradingFailure(f"case '{name}': image {i} should be the uint8 BGR array cv2.imread "
                                 f"returns, {list(w.shape)}; got {describe(g)}")
        expect_equal(torch.from_numpy(g), torch.from_numpy(w), name, what=f"image {i}")
    _check_targets(got, want, name)


@graded("widerface_dataset", 1, "applies preproc(image, target) when given")
def test_dataset_preproc(submission):
    name = cases.DATASET_CASES[1].name
    got, want = _dataset_reference(submission, name)
    for i, (g, w) in enumerate(zip(got["images"], want["images"])):
        if not isinstance(g, np.ndarray) or not np.array_equal(g, w):
            raise GradingFailure(f"case '{name}': image {i} is not what preproc returned; call "
                                 f"self.preproc(image, target) and return its result")
    _check_targets(got, want, name)
