"""utils.detect and utils.detectors: notebook folders, weights and image errors, the public checkpoint's known results
(skipped without ../shared/data), padding in a batch vs each image alone, and the CLI end to end."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook
from skimage import data as skdata

from tests.notebooks import copy_homework, edit_cells
from tests.test_inference import reference_postprocess
from utils.cli import run
from utils.detect import detections_json, main, read_image
from utils.detectors import UserError, load_code, load_detector, load_model, load_weights
from utils.detectors.notebooks import REPO_ROOT, notebook_folder
from utils.detectors.retinaface import NOTEBOOKS, load_homework

SOLUTIONS_DIR = REPO_ROOT / "solutions" / "retinaface"
RELEASE_DIR = REPO_ROOT / "assignments" / "retinaface"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PUBLIC_WEIGHTS = SHARED_DATA / "checkpoints" / "retinaface_mobilenet0.25.pth"
CROWD = SHARED_DATA / "photos" / "crowd.jpg"
CROWD_FACES = 26            # the public implementation's count at vis 0.6, original size
VIS = 0.6
needs_public = pytest.mark.skipif(not (PUBLIC_WEIGHTS.is_file() and CROWD.is_file()),
                                  reason=f"{SHARED_DATA} (public checkpoint, crowd photo) not found")


def grace_hopper_path() -> str:
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def single_face_photos() -> dict[str, np.ndarray]:
    """uint8 BGR photos with exactly one face each (shipped by scikit-image and matplotlib)."""
    return {"astronaut": cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR),
            "camera": cv2.cvtColor(skdata.camera(), cv2.COLOR_GRAY2BGR),
            "grace_hopper": read_image(grace_hopper_path())}


# -- notebook folders ----------------------------------------------------------------------------------

def _folder(impl):
    return notebook_folder("retinaface", impl, NOTEBOOKS)


def test_notebook_folder_layouts(tmp_path):
    assert _folder("solutions") == (SOLUTIONS_DIR, None)
    assert _folder(RELEASE_DIR.parent) == (RELEASE_DIR, None)
    student = copy_homework(tmp_path / "student")
    assert _folder(student) == (student / "retinaface", RELEASE_DIR)
    assert _folder(student / "retinaface") == (student / "retinaface", RELEASE_DIR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"expected the retinaface notebooks 2_model.ipynb, 3_anchors.ipynb, "
                                        r"4_matching_nms.ipynb, 5_loss_training.ipynb, 6_testing_finetuning.ipynb in .*empty/retinaface"):
        _folder(tmp_path / "empty")
    with pytest.raises(UserError, match=r"--impl .*nowhere: no such folder"):
        _folder(tmp_path / "nowhere")


def test_release_stubs_are_reported_by_name():
    with pytest.raises(UserError, match=r"3_anchors.ipynb: PriorBox is not implemented yet"):
        load_homework(load_code("retinaface", RELEASE_DIR.parent, NOTEBOOKS))


def test_student_folder_takes_the_given_cells_from_the_release(tmp_path):
    student = copy_homework(tmp_path / "student") / "retinaface"

    def break_given_cells(cells):
        for c in cells:
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").startswith("given_"):
                c["source"] = "raise SystemExit('edited locked cell')"
    edit_cells(student / "3_anchors.ipynb", break_given_cells)
    code = load_code("retinaface", student.parent, NOTEBOOKS)
    assert code.folder == student.resolve()
    prior_box = code.get("PriorBox", "3_anchors.ipynb")
    assert prior_box(dict(min_sizes=[[16]], steps=[8], clip=False), (16, 16)).forward().shape == (4, 4)


def test_a_broken_answer_is_named(tmp_path):
    student = copy_homework(tmp_path / "student") / "retinaface"

    def break_decode(cells):
        for c in cells:
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "decode":
                c["source"] = "def decode(loc, priors, variances):\n    return loc.no_such_method()\n"
    edit_cells(student / "4_matching_nms.ipynb", break_decode)
    with pytest.raises(UserError, match=r"4_matching_nms.ipynb: decode failed: AttributeError"):
        load_homework(load_code("retinaface", student.parent, NOTEBOOKS))


# -- weights and images ------------------------------------------------------------------------------

def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    extra = tmp_path / "extra.pth"
    torch.save({"0.weight": torch.zeros(2, 3), "head.bias": torch.zeros(2)}, extra)
    with pytest.raises(UserError, match=r"extra.pth: the checkpoint does not fit .*1 missing keys \(e.g. 0.bias\)"
                                         r"; 1 unexpected keys \(e.g. head.bias\)"):
        load_weights(model, extra)
    wrong = tmp_path / "wrong.pth"
    torch.save({"module.0.weight": torch.zeros(4, 3), "module.0.bias": torch.zeros(2)}, wrong)
    with pytest.raises(UserError, match=r"tensors of another shape \(e.g. 0.weight \(4, 3\) vs \(2, 3\)\)"):
        load_weights(model, wrong)
    good = tmp_path / "good.pth"
    torch.save({"module.0.weight": torch.ones(2, 3), "module.0.bias": torch.ones(2)}, good)
    load_weights(model, good)
    assert model[0].weight.sum().item() == 6
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth: not a readable PyTorch checkpoint"):
        load_weights(model, garbage)
    with pytest.raises(UserError, match="nothere.pth: checkpoint not found"):
        load_weights(model, tmp_path / "nothere.pth")


def test_images_missing_or_corrupt_are_named(tmp_path):
    with pytest.raises(UserError, match="nothere.jpg: image not found"):
        read_image(tmp_path / "nothere.jpg")
    for name, content in (("bad.jpg", b"not an image"), ("empty.png", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=f"{name}: not a readable image"):
            read_image(tmp_path / name)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.full((5, 7), 9, np.uint8))
    image = read_image(gray)
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8


def test_cli_rejects_a_missing_image_before_loading(tmp_path, capsys):
    assert run(main, ["--weights", str(tmp_path / "w.pth"), "--cfg", "mobilenet0.25",
                      str(tmp_path / "a.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image not found") and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert run(main, ["--weights", str(tmp_path / "missing.pth"), str(image)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.pth'}: checkpoint not found")
    assert run(main, ["--weights", "w.pth", "--impl", str(tmp_path / "nowhere"), str(image)]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(UserError):  # --debug shows the traceback instead
        run(main, ["--weights", str(tmp_path / "missing.pth"), "--debug", str(image)])


def test_load_model_builds_every_registered_lite_config():
    from utils.detectors import ADAPTERS, adapter
    for name in ADAPTERS:
        model = load_model(name, adapter(name).LITE)
        assert not model.training and sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(UserError, match="unknown model 'yolo'"):
        load_model("yolo", "x")
    with pytest.raises(UserError, match="unknown --model retinaface config 'tiny'"):
        load_model("retinaface", "tiny")


# -- the public checkpoint -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def public():
    """The solutions' RetinaFace with the public MobileNet-0.25 weights, and each test photo's
    raw outputs and detections when run alone at its original size (computed once)."""
    if not (PUBLIC_WEIGHTS.is_file() and CROWD.is_file()):
        pytest.skip(f"{SHARED_DATA} (public checkpoint, crowd photo) not found")
    torch.manual_seed(0)
    model = load_model("retinaface", "mobilenet0.25", weights=PUBLIC_WEIGHTS)
    detector = load_detector("retinaface", model, "mobilenet0.25")
    photos = {"crowd": read_image(CROWD), **single_face_photos()}
    outputs, alone = {}, {}
    for name, image in photos.items():
        batch = detector.prepare([image])
        outputs[name] = detector.forward(batch)
        alone[name] = detector.postprocess(outputs[name], batch.shape[-2:])[0]
    return detector, photos, outputs, alone


@needs_public
def test_crowd_gives_the_public_result(public):
    detector, photos, outputs, alone = public
    assert len(alone["crowd"].above(VIS)) == CROWD_FACES
    # the straightforward all-priors pipeline (the solutions' decode, torchvision NMS) agrees exactly
    loc, conf, landm = (o[0] for o in outputs["crowd"])
    size = photos["crowd"].shape[:2]
    boxes, scores, points = reference_postprocess(
        loc, conf, landm, detector.priors(size, loc.device), size, detector.conf_thresh, detector.nms_thresh,
        detector.top_k, detector.keep_top_k, detector.decode_fn, detector.decode_landm_fn)
    torch.testing.assert_close(torch.from_numpy(alone["crowd"].scores), scores)
    torch.testing.assert_close(torch.from_numpy(alone["crowd"].boxes), boxes)
    torch.testing.assert_close(torch.from_numpy(alone["crowd"].landmarks), points)


@needs_public
def test_the_notebook_postprocess_and_the_kits_vectorised_pipeline_agree(public):
    """The detector runs the notebook's per-image ``postprocess`` (Part 8); the kit's batched
    pipeline (``postprocess_fn=None``) must give the same detections on the crowd photo."""
    detector, photos, outputs, alone = public
    assert detector.postprocess_fn is not None
    detector.postprocess_fn, notebook = None, detector.postprocess_fn
    try:
        batched = detector.postprocess(outputs["crowd"], photos["crowd"].shape[:2])[0]
    finally:
        detector.postprocess_fn = notebook
    assert len(batched) == len(alone["crowd"])
    np.testing.assert_allclose(batched.boxes, alone["crowd"].boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(batched.scores, alone["crowd"].scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.landmarks, alone["crowd"].landmarks, rtol=1e-5, atol=1e-3)


@needs_public
@pytest.mark.parametrize("name", ["astronaut", "camera", "grace_hopper"])
def test_single_face_photos_give_one_face(public, name):
    _, _, _, alone = public
    assert len(alone[name].above(VIS)) == 1


@needs_public
def test_padding_in_a_batch_keeps_the_faces(public):
    detector, photos, _, alone = public
    names = ["astronaut", "camera", "grace_hopper"]     # 512x512, 512x512, 600x512 -> padded to 600x512
    together = detector.detect([photos[n] for n in names])
    for name, found in zip(names, together):
        shown, reference = found.above(VIS), alone[name].above(VIS)
        assert len(shown) == len(reference) == 1
        np.testing.assert_allclose(shown.boxes, reference.boxes, atol=0.5)
        np.testing.assert_allclose(shown.scores, reference.scores, atol=1e-3)
        np.testing.assert_allclose(shown.landmarks, reference.landmarks, atol=0.5)


@needs_public
def test_cli_end_to_end(public, tmp_path, capsys):
    image = grace_hopper_path()
    out_json, out_dir = tmp_path / "dets.json", tmp_path / "drawn"
    assert main(["--weights", str(PUBLIC_WEIGHTS), "--cfg", "mobilenet0.25", "--json", str(out_json),
                 "--save", str(out_dir), image]) == 0
    result = json.loads(out_json.read_text())
    assert list(result) == [image] and set(result[image]) == {"boxes", "landmarks"}
    boxes, landmarks = result[image]["boxes"], result[image]["landmarks"]
    assert len(boxes) == len(landmarks) == 1 and len(boxes[0]) == 5 and len(landmarks[0]) == 10
    expected = detections_json(public[3]["grace_hopper"].above(VIS))
    for key in ("boxes", "landmarks"):
        np.testing.assert_allclose(result[image][key], expected[key], atol=1e-3)
    drawn = cv2.imread(str(out_dir / "grace_hopper.jpg"))
    assert drawn is not None and drawn.shape == public[1]["grace_hopper"].shape
    assert "1 faces scoring >= 0.6" in capsys.readouterr().out


@needs_public
def test_cli_names_a_checkpoint_that_does_not_fit_the_config(tmp_path, capsys):
    assert run(main, ["--weights", str(PUBLIC_WEIGHTS), "--cfg", "resnet50", grace_hopper_path()]) == 2
    err = capsys.readouterr().err
    assert re.search(r"does not fit retinaface with config resnet50: \d+ missing keys", err), err
    assert len(err.splitlines()) == 1
