"""Detect faces in photos with any homework's detector, built from notebook code (solutions or a student's).

    python -m utils.detect --weights PATH [--model retinaface] [--cfg mobilenet0.25]
        [--impl solutions|DIR] [--conf 0.02] [--nms 0.4] [--vis 0.6] [--json OUT] [--save DIR]
        [--device cpu] [--debug] IMAGE...

``--model`` picks the homework (``utils.detectors.ADAPTERS``) and ``--cfg`` one of its configs
(default: its CPU "lite" config). ``--impl`` picks whose notebook code runs: ``solutions`` (default)
or a folder laid out like ``assignments/`` (``DIR/<model>/*.ipynb``, or the notebooks directly in
``DIR``); a student's answer cells then run with the given cells of the release, as grading does.
Each image is run alone at its original size (the public evaluation protocol). ``--json`` writes
``{image path: {"boxes": [[x1, y1, x2, y2, score], ...], "landmarks": [[10 numbers], ...]}}`` for
the detections scoring >= ``--vis``; ``--save`` writes the images with those detections drawn.
A missing file, a checkpoint that does not fit the config or an unfinished notebook prints one line
and exits 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from utils.cli import run
from utils.detectors import ADAPTERS, UserError, adapter, load_detector, load_model
from utils.inference import CONF_THRESH, NMS_THRESH
from utils.viz import draw_detections

VIS_THRESH = 0.6             # detections drawn and written by the CLI score at least this


def read_image(path: str | Path) -> np.ndarray:
    """uint8 BGR [H, W, 3] (grayscale is converted); a missing or unreadable file is named."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    # imdecode from bytes also reads paths that cv2.imread cannot (non-ASCII names on Windows).
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UserError(f"{path}: not a readable image (corrupt or unsupported format)")
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
    parser.add_argument("--model", default="retinaface", choices=sorted(ADAPTERS), help="which homework's detector")
    parser.add_argument("--cfg", help="config name (default: the model's CPU lite config)")
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
        raise UserError(f"image not found: {', '.join(missing)}")
    cfg = args.cfg or adapter(args.model).LITE
    model = load_model(args.model, cfg, args.impl, args.weights, args.device)
    detector = load_detector(args.model, model, cfg, args.impl, conf_thresh=args.conf, nms_thresh=args.nms,
                             device=args.device)
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
    sys.exit(run(main))
