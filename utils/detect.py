"""Detect faces in photos with a RetinaFace whose code comes from the notebooks (solutions or a student's).

    python -m utils.detect --weights PATH --cfg mobilenet0.25|resnet50 [--impl solutions|DIR]
        [--conf 0.02] [--nms 0.4] [--vis 0.6] [--json OUT] [--save DIR] [--device cpu] IMAGE...

``--impl`` picks whose notebook code runs: ``solutions`` (default) or a folder laid out like
``assignments/`` (``DIR/retinaface/*.ipynb``, or the notebooks directly in ``DIR``); a student's
answer cells then run with the given cells of the release, as grading does. Each image is run
alone at its original size (the public evaluation protocol). ``--json`` writes
``{image path: {"boxes": [[x1, y1, x2, y2, score], ...], "landmarks": [[10 numbers], ...]}}`` for
the detections scoring >= ``--vis``; ``--save`` writes the images with those detections drawn.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from detector.retinaface.config import CONFIGS, get_config
from utils.checkpoint import read_state_dict
from utils.inference import CONF_THRESH, DEFAULT_VARIANCES, NMS_THRESH, Detector
from utils.notebook import load_notebook
from utils.viz import draw_detections

REPO_ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = "retinaface"
SOLUTIONS_DIR = REPO_ROOT / "solutions" / HOMEWORK
RELEASE_DIR = REPO_ROOT / "assignments" / HOMEWORK
# The definitions inference needs, by the notebook that defines them.
NEEDED = {"2_model.ipynb": ("RetinaFace",), "3_anchors.ipynb": ("PriorBox",),
          "4_matching_nms.ipynb": ("decode", "decode_landm")}
VIS_THRESH = 0.6             # detections drawn and written by the CLI score at least this
SMOKE_SIZE = (32, 32)        # input size used to check the loaded functions run at all
SHOWN_KEYS = 5               # key names quoted in a weights-mismatch error


@dataclass(frozen=True)
class RetinaFaceCode:
    """The notebook definitions inference uses, and where they came from."""

    RetinaFace: type
    PriorBox: type
    decode: Callable
    decode_landm: Callable
    folder: Path


def notebook_folder(impl: str | Path) -> tuple[Path, Path | None]:
    """``'solutions'`` or a folder -> (folder holding the three notebooks, release folder or None).

    The release folder (``assignments/retinaface``) supplies the given cells of a student's folder;
    None means the notebooks supply their own (the solutions, the release itself, or any folder
    when the kit has no release).
    """
    if str(impl) == "solutions":
        if not SOLUTIONS_DIR.is_dir():
            raise FileNotFoundError(f"{SOLUTIONS_DIR} not found (the student release has no "
                                    f"solutions); pass --impl assignments or your own folder")
        return SOLUTIONS_DIR, None
    root = Path(impl)
    for folder in (root / HOMEWORK, root):
        if all((folder / name).is_file() for name in NEEDED):
            own_given_cells = folder.resolve() in (RELEASE_DIR.resolve(), SOLUTIONS_DIR.resolve())
            return folder, (None if own_given_cells or not RELEASE_DIR.is_dir() else RELEASE_DIR)
    raise FileNotFoundError(f"{root}: expected the notebooks {', '.join(NEEDED)} in {root / HOMEWORK} "
                            f"(a folder laid out like assignments/) or directly in {root}")


def _function_broken(folder: Path, notebook: str, name: str, module, err: BaseException) -> RuntimeError:
    report = module.__notebook_report__
    failing = [f"{u.grade_id} ({u.status})" for u in report.units.values() if u.status != "ok"]
    hint = f"; failing cells there: {', '.join(failing)}" if failing else ""
    reason = "is not implemented yet" if isinstance(err, NotImplementedError) else f"failed: {err!r}"
    return RuntimeError(f"{folder / notebook}: {name} {reason}{hint}")


def load_retinaface_code(impl: str | Path = "solutions") -> RetinaFaceCode:
    """Load RetinaFace, PriorBox, decode and decode_landm from the notebooks of ``impl`` and check
    that they run (a stub raising NotImplementedError is reported with its notebook)."""
    folder, release = notebook_folder(impl)
    found, modules = {}, {}
    for notebook, names in NEEDED.items():
        module = load_notebook(folder / notebook, None if release is None else release / notebook)
        modules.update({name: (notebook, module) for name in names})
        for name in names:
            if not hasattr(module, name):
                raise _function_broken(folder, notebook, name, module,
                                       NameError(f"{name} is not defined"))
            found[name] = getattr(module, name)
    code = RetinaFaceCode(found["RetinaFace"], found["PriorBox"], found["decode"],
                          found["decode_landm"], folder)
    priors = _smoke(modules, folder, "PriorBox",
                    lambda: code.PriorBox(get_config("mobilenet0.25"), image_size=SMOKE_SIZE).forward())
    rows = torch.as_tensor(priors)[:1]
    _smoke(modules, folder, "decode", lambda: code.decode(torch.zeros(1, 4), rows, DEFAULT_VARIANCES))
    _smoke(modules, folder, "decode_landm", lambda: code.decode_landm(torch.zeros(1, 10), rows, DEFAULT_VARIANCES))
    return code


def _smoke(modules: dict, folder: Path, name: str, call: Callable):
    try:
        return call()
    except Exception as err:  # the student's code: report which function, never a bare traceback
        notebook, module = modules[name]
        raise _function_broken(folder, notebook, name, module, err) from err


def load_weights(model: torch.nn.Module, path: str | Path, what: str = "the model") -> None:
    """Load a checkpoint (``weights_only``) into ``model``; a mismatch names the missing and
    unexpected keys (or the shapes that differ) instead of a bare load_state_dict error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = read_state_dict(path)
    except ValueError:  # already names the file and what was expected
        raise
    except Exception as err:  # torch.load's unpickling errors do not say which file
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(state) & set(own))
                   if state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:SHOWN_KEYS])})"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("tensors of another shape", wrong_shape)) if keys]
        raise ValueError(f"{path}: the checkpoint does not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_retinaface(impl: str | Path = "solutions", cfg_name: str = "mobilenet0.25",
                    weights: str | Path | None = None, device: str | torch.device = "cpu",
                    **detector_options) -> tuple[torch.nn.Module, Detector]:
    """(model in eval mode on ``device``, Detector) built from the notebooks of ``impl``.

    cfg_name: ``mobilenet0.25`` or ``resnet50`` (detector/config.py); weights: a checkpoint path
    (public state_dict or the kit's training checkpoint) or None for random initial weights;
    detector_options: Detector's keywords (conf_thresh, nms_thresh, top_k, keep_top_k, mean).
    """
    code = load_retinaface_code(impl)
    cfg = get_config(cfg_name)
    try:
        model = code.RetinaFace(cfg)
    except Exception as err:  # a student's unfinished model
        raise RuntimeError(f"{code.folder / '2_model.ipynb'}: RetinaFace(cfg) failed: {err!r}") from err
    if weights is not None:
        load_weights(model, weights, f"RetinaFace with --cfg {cfg_name}")
    model = model.to(device).eval()

    def priors(size: tuple[int, int]) -> torch.Tensor:
        return code.PriorBox(cfg, image_size=size).forward()

    detector = Detector(model, priors, code.decode, code.decode_landm, cfg["variance"],
                        device=device, **detector_options)
    return model, detector


def read_image(path: str | Path) -> np.ndarray:
    """uint8 BGR [H, W, 3] (grayscale is converted); a missing or unreadable file is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    # imdecode from bytes also reads paths that cv2.imread cannot (non-ASCII names on Windows).
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: not a readable image (corrupt or unsupported format)")
    return image


def detections_json(detections) -> dict:
    """{"boxes": [[x1, y1, x2, y2, score], ...], "landmarks": [[l0x, l0y, ..., l4y], ...]}."""
    boxes = np.column_stack([detections.boxes, detections.scores]).reshape(-1, 5)
    landmarks = detections.landmarks if detections.landmarks is not None else np.zeros((0, 10))
    return {"boxes": boxes.astype(float).tolist(), "landmarks": landmarks.astype(float).tolist()}


def _save_path(folder: Path, image: str, used: set[str]) -> Path:
    """``folder/<image file name>``, numbered when two inputs share a file name."""
    name, k = Path(image).name, 1
    while name in used:
        name, k = f"{Path(image).stem}_{k}{Path(image).suffix}", k + 1
    used.add(name)
    return folder / name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--weights", required=True, help="checkpoint (.pth/.pt)")
    parser.add_argument("--cfg", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--impl", default="solutions", help="'solutions' or a notebook folder")
    parser.add_argument("--conf", type=float, default=CONF_THRESH, help="candidate score threshold")
    parser.add_argument("--nms", type=float, default=NMS_THRESH, help="NMS IoU threshold")
    parser.add_argument("--vis", type=float, default=VIS_THRESH, help="score to report and draw")
    parser.add_argument("--json", type=Path, help="write the detections to this JSON file")
    parser.add_argument("--save", type=Path, help="write the drawn images to this folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:  # before the model loads, so a typo fails fast
        parser.error(f"image not found: {', '.join(missing)}")
    _, detector = load_retinaface(args.impl, args.cfg, args.weights, args.device,
                                  conf_thresh=args.conf, nms_thresh=args.nms)
    results, used_names = {}, set()
    for path in args.images:
        image = read_image(path)
        found = detector.detect([image])[0]
        shown = found.above(args.vis)
        results[path] = detections_json(shown)
        print(f"{path}: {len(shown)} faces scoring >= {args.vis} ({len(found)} detections in all)")
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            drawn = draw_detections(image, shown.boxes, shown.landmarks, shown.scores)
            out = _save_path(args.save, path, used_names)
            if not cv2.imwrite(str(out), drawn):
                raise OSError(f"{out}: could not write the image")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
