"""The official WIDER FACE annotations, read and converted to the homework's ``label.txt``.

Two official sources:

- ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``: for each image its path, its face count
  and one line per face ``x y w h blur expression illumination invalid occlusion pose`` (an image
  with no faces has count 0 followed by one line of zeros);
- the val ``.mat`` files (``wider_face_val.mat`` + ``wider_{easy,medium,hard}_val.mat``), read by
  ``data.wider_gt``.

Neither has landmarks, so the converted ``label.txt`` holds box-only ``x y w h`` lines (the
RetinaFace release adds landmarks to the train labels; use its ``label.txt`` directly when you
have it). Convert with::

    python -m data.wider_official --annotations wider_face_split/wider_face_train_bbx_gt.txt \\
        --out ROOT/train/label.txt
    python -m data.wider_official --annotations eval_tools/ground_truth/wider_face_val.mat \\
        --out ROOT/val/label.txt

Converting the val ``.mat`` also copies the four ground-truth files to ``ROOT/val/ground_truth/``,
where the evaluation looks for them.
"""
from __future__ import annotations

import argparse
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.labels import (ABSENT, TARGET_COLUMNS, DroppedFacesWarning, LabelFormatError,
                         write_labels)
from data.wider_gt import ALL_FACES_FILE, SUBSETS, load_wider_gt, subset_file

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
FACE_FIELDS = 4 + len(ATTRIBUTES)
GROUND_TRUTH_DIR = "ground_truth"


@dataclass
class OfficialAnnotation:
    """One image of a ``wider_face_*_bbx_gt.txt``.

    image: relative path, e.g. ``0--Parade/0_Parade_marchingband_1_849.jpg``.
    boxes: float32 ``[k, 4]`` (x, y, w, h) pixels.
    attributes: int64 ``[k, 6]`` blur, expression, illumination, invalid, occlusion, pose.
    """

    image: str
    boxes: np.ndarray
    attributes: np.ndarray


def _fail(path: Path, line_no: int, message: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line_no}: {message}")


def _face_values(path: Path, line_no: int, line: str) -> list[float]:
    fields = line.split()
    if len(fields) != FACE_FIELDS:
        raise _fail(path, line_no, f"{len(fields)} fields; expected {FACE_FIELDS} "
                                   f"(x y w h {' '.join(ATTRIBUTES)})")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise _fail(path, line_no, f"non-numeric field in {line!r}; expected numbers") from None
    if not np.isfinite(values).all():
        raise _fail(path, line_no, f"non-finite value in {line!r}; expected finite numbers")
    return values


def read_official_bbx(path: str | Path) -> list[OfficialAnnotation]:
    """Read a ``wider_face_{train,val}_bbx_gt.txt``; malformed content raises ``LabelFormatError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: WIDER FACE annotation file not found")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        line_no = path.read_bytes()[:err.start].count(b"\n") + 1
        raise _fail(path, line_no, f"bytes that are not UTF-8 text ({err.reason}); "
                                   f"expected a text annotation file") from None
    out, i = [], 0
    while i < len(lines):
        image = lines[i].strip()
        if not image:
            i += 1
            continue
        if not image.lower().endswith((".jpg", ".jpeg", ".png")):
            raise _fail(path, i + 1, f"{image!r}; expected an image path such as "
                                     f"'0--Parade/0_Parade_marchingband_1_849.jpg'")
        if i + 1 >= len(lines):
            raise _fail(path, i + 2, "truncated file: expected the face count of " + image)
        count_text = lines[i + 1].strip()
        if not count_text.isdigit():
            raise _fail(path, i + 2, f"{count_text!r}; expected the face count of {image}")
        count = int(count_text)
        face_lines = max(count, 1)  # an image with no faces still has one line of zeros
        if i + 2 + face_lines > len(lines):
            raise _fail(path, len(lines) + 1, f"truncated file: {image} announces {count} face(s), "
                                              f"only {len(lines) - i - 2} line(s) follow")
        values = [_face_values(path, i + 3 + k, lines[i + 2 + k]) for k in range(face_lines)]
        table = np.array(values[:count], dtype=np.float64).reshape(-1, FACE_FIELDS)
        out.append(OfficialAnnotation(image, table[:, :4].astype(np.float32),
                                      table[:, 4:].astype(np.int64)))
        i += 2 + face_lines
    return out


def boxes_to_targets(boxes_xywh: np.ndarray) -> tuple[np.ndarray, int]:
    """``[k, 4] (x, y, w, h)`` boxes as targets ``[m, 15]`` without landmarks (flag -1).

    Boxes with ``w <= 0`` or ``h <= 0`` are dropped; returns ``(targets, number dropped)``.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    keep = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    boxes = boxes[keep]
    targets = np.full((len(boxes), TARGET_COLUMNS), ABSENT, dtype=np.float32)
    targets[:, :2] = boxes[:, :2]
    targets[:, 2:4] = boxes[:, :2] + boxes[:, 2:]
    return targets, int((~keep).sum())


def official_entries(source: str | Path) -> list[tuple[str, np.ndarray]]:
    """Label entries ``[(image path, [n, 15])]`` from a ``*_bbx_gt.txt`` or ``wider_face_val.mat``.

    Degenerate boxes (w or h <= 0) are dropped and counted in one ``DroppedFacesWarning``.
    """
    source = Path(source)
    if source.suffix == ".mat":
        gt = load_wider_gt(source.parent, subsets=())
        pairs = [(f"{event}/{name}.jpg", gt.boxes[e][i])
                 for e, event in enumerate(gt.events) for i, name in enumerate(gt.images[e])]
    else:
        pairs = [(a.image, a.boxes) for a in read_official_bbx(source)]
    entries, dropped = [], 0
    for image, boxes in pairs:
        targets, n_dropped = boxes_to_targets(boxes)
        entries.append((image, targets))
        dropped += n_dropped
    if dropped:
        warnings.warn(f"{source}: dropped {dropped} face(s) with w <= 0 or h <= 0",
                      DroppedFacesWarning, stacklevel=2)
    return entries


def convert(source: str | Path, out: str | Path) -> int:
    """Write ``out`` (a ``label.txt``) from official annotations; returns the number of images.

    From ``wider_face_val.mat`` the four ground-truth ``.mat`` files (the subsets looked for beside
    it) are also copied to ``<out folder>/ground_truth/`` for the evaluation.
    """
    source, out = Path(source), Path(out)
    entries = official_entries(source)
    write_labels(out, entries, landmarks=False)
    if source.suffix == ".mat":
        gt_dir = out.parent / GROUND_TRUTH_DIR
        gt_dir.mkdir(parents=True, exist_ok=True)
        names = [ALL_FACES_FILE] + [subset_file(s) for s in SUBSETS]
        missing = [n for n in names if not (source.parent / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{source.parent}: missing {missing}; the evaluation needs all "
                                    f"of {names} (they are in WIDER FACE's eval_tools/ground_truth/)")
        for name in names:
            shutil.copyfile(source.parent / name, gt_dir / name)
    return len(entries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert official WIDER FACE annotations to label.txt")
    parser.add_argument("--annotations", required=True,
                        help="wider_face_{train,val}_bbx_gt.txt or wider_face_val.mat")
    parser.add_argument("--out", required=True, help="label.txt to write, e.g. ROOT/train/label.txt")
    args = parser.parse_args(argv)
    n = convert(args.annotations, args.out)
    print(f"wrote {args.out} ({n} images)")


if __name__ == "__main__":
    main()
