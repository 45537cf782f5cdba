"""The optional cascade part of the RetinaFace homework (``7_cascade_regression.ipynb``): the check
cells name the classic mistakes (forcing or step 1's threshold in step 2, targets encoded against the
wrong boxes, step-1 boxes not detached), the given model keeps RetinaFace's step 1, and the inference
glue (``utils.detectors.retinaface_cascade``) decodes step 2 on top of step 1."""
import contextlib
import io

import nbformat
import pytest
import torch

from autograder.check import Checker
from detector.retinaface.config import cfg_mnet
from tests.notebooks import REPO_ROOT
from utils.detectors.retinaface_cascade import CascadeOutputs, cascade_criterion, center_size
from utils.notebook import load_notebook

CASCADE = REPO_ROOT / "solutions" / "retinaface" / "7_cascade_regression.ipynb"


def _cell(marker=None, grade_id=None):
    """The source of the notebook's cell with ``grade_id``, or of the code cell containing ``marker``."""
    cells = nbformat.read(CASCADE, as_version=4).cells
    for c in cells:
        if grade_id is not None and c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return c.source
        if marker is not None and c.cell_type == "code" and marker in c.source:
            return c.source
    raise KeyError(marker or grade_id)


@pytest.fixture(scope="module")
def solution():
    return dict(vars(load_notebook(CASCADE)))


def _checked(namespace, unit, replacements=(), grade_id=None):
    """What the check cell of ``unit`` prints after the answer cell ``grade_id`` (default ``unit``)
    is re-defined with each (old, new) of ``replacements`` applied (each old must be present)."""
    namespace = dict(namespace)
    source = _cell(grade_id=grade_id or unit)
    for old, new in replacements:
        assert old in source, old
        source = source.replace(old, new)
    exec(source.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""), namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        Checker("retinaface", namespace)(unit)
    return out.getvalue()


def test_the_solutions_pass_the_check_cells(solution):
    assert "all public checks pass" in _checked(solution, "match_cascade")
    assert "all public checks pass" in _checked(solution, "cascade_loss")


def test_forcing_in_step_2_is_named(solution):
    forcing = ("    conf[best_overlap < threshold] = 0                                  # no forcing in step 2\n",
               "    conf[best_overlap < threshold] = 0\n"
               "    best_box = overlaps.argmax(dim=1)\n"
               "    keep = overlaps.max(dim=1).values >= 0.2\n"
               "    conf[best_box[keep]] = labels[keep].long()\n"
               "    best_face[best_box[keep]] = torch.arange(len(truths))[keep]\n")
    out = _checked(solution, "match_cascade", [forcing])
    assert "✗ labels" in out and "step 2 has no forcing" in out


def test_a_hard_coded_threshold_is_named(solution):
    out = _checked(solution, "match_cascade", [("best_overlap < threshold", "best_overlap < 0.5")])
    assert "use the threshold argument" in out


def test_targets_against_corner_boxes_are_named(solution):
    out = _checked(solution, "match_cascade", [("center_size(refined), variances", "refined, variances")])
    assert "✓ labels" in out and "convert them with center_size first" in out


def test_step_1_boxes_not_detached_are_named(solution):
    out = _checked(solution, "cascade_loss", [("decode(loc1[b].detach(), ", "decode(loc1[b], ")])
    assert "✗ step 1's MultiBoxLoss" in out and "detach step 1's boxes" in out


def test_step_1_threshold_in_the_loss_is_named(solution):
    out = _checked(solution, "cascade_loss", [("match_cascade(self.cascade_thresh, ",
                                              "match_cascade(self.step1.threshold, ")])
    assert "step 2 used step 1's threshold 0.35" in out


def test_targets_against_the_anchors_are_named(solution):
    wrong = ("match_cascade(self.cascade_thresh, t[:, :4], refined, self.variance, t[:, 14])",
             "match_cascade(self.cascade_thresh, t[:, :4], refined, self.variance, t[:, 14])\n"
             "            loc = encode(t[:, :4][jaccard(t[:, :4], refined).argmax(0)], priors, self.variance)"
             " if len(t) else loc")
    out = _checked(solution, "cascade_loss", [wrong])
    assert "encoded against the original anchors" in out


def _model_namespace(solution, monkeypatch):
    monkeypatch.chdir(CASCADE.parent)  # the cell imports 2_model.ipynb from the notebook's folder
    namespace = dict(solution)
    exec(_cell(marker="class CascadeRetinaFace"), namespace)
    return namespace


def test_the_cascade_model_keeps_step_1_of_retinaface(solution, monkeypatch):
    namespace = _model_namespace(solution, monkeypatch)
    image = torch.randn(2, 3, 64, 96)
    torch.manual_seed(0)
    plain = namespace["RetinaFace"](cfg_mnet).eval()
    torch.manual_seed(0)
    cascade = namespace["CascadeRetinaFace"](cfg_mnet).eval()
    with torch.no_grad():
        want = plain(image)
        loc1, conf, landm, loc2 = cascade(image)
    for got, expected in zip((loc1, conf, landm), want):   # same initial weights, same step 1
        torch.testing.assert_close(got, expected)
    assert loc2.shape == loc1.shape and not torch.allclose(loc2, loc1)
    assert not any(module._forward_hooks for module in (cascade.ssh1, cascade.ssh2, cascade.ssh3))


class _FixedOutputs(torch.nn.Module):
    """A stand-in cascade model with given outputs for any input."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return self.outputs


def test_the_detector_glue_decodes_step_2_on_top_of_step_1(solution):
    decode, encode = solution["decode"], solution["encode"]
    variances = cfg_mnet["variance"]
    g = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(30, 2, generator=g), 0.05 + 0.3 * torch.rand(30, 2, generator=g)], 1)
    loc1, loc2 = torch.randn(2, 30, 4, generator=g), torch.randn(2, 30, 4, generator=g)
    conf, landm = torch.randn(2, 30, 2, generator=g), torch.randn(2, 30, 10, generator=g)
    model = _FixedOutputs((loc1, conf, landm, loc2))
    images = torch.zeros(2, 3, 8, 8)
    loc, conf_out, landm_out = CascadeOutputs(model, lambda size: priors, decode, encode, variances)(images)
    assert conf_out is conf and landm_out is landm
    for b in range(2):
        step1 = decode(loc1[b], priors, variances)
        want = decode(loc2[b], center_size(step1), variances)
        torch.testing.assert_close(decode(loc[b], priors, variances), want, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(want, step1, atol=1e-3)
    one = CascadeOutputs(model, lambda size: priors, decode, encode, variances, steps=1)(images)
    assert one[0] is loc1


def test_the_criterion_weights_both_box_terms():
    parts = cascade_criterion(lambda outputs, priors, targets: tuple(torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0)),
                              cfg_mnet)(None, None, None)
    w = cfg_mnet["loc_weight"]
    assert {k: float(v) for k, v in parts.items()} == {"loc": w, "conf": 2.0, "landm": 3.0, "loc2": 4.0 * w}
