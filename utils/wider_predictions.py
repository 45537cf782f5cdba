"""Detections in the official WIDER FACE submission format, read and written.

A submission is a folder with one sub-folder per event and one text file per image::

    PRED_DIR/0--Parade/0_Parade_marchingband_1_465.txt
        0_Parade_marchingband_1_465      <- image name (a path or a ``.jpg`` suffix is tolerated)
        2                                <- number of detections
        345 211 4 4 0.99                 <- x y w h score (pixels; any float), one per detection
        331 126 3 3 0.87

``utils.evaluate`` re-exports both functions; the kit's detectors call ``write_predictions``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

PREDICTION_SUFFIX = ".txt"
IMAGE_SUFFIX = ".jpg"     # the official reader strips it from the name line; so do we
FIELDS_PER_LINE = 5       # x, y, w, h, score
HEADER_LINES = 2          # image name, detection count


def _image_key(name_line: str) -> str:
    """Image name as the ground truth spells it: last path part, without ``.jpg``."""
    name = name_line.strip().replace("\\", "/").split("/")[-1]
    return name[: -len(IMAGE_SUFFIX)] if name.lower().endswith(IMAGE_SUFFIX) else name


def _malformed(path: Path, line_no: int, what: str) -> ValueError:
    return ValueError(f"{path}:{line_no}: {what}; expected the official WIDER FACE format "
                      f"(image name, detection count, then one 'x y w h score' line per detection)")


def _parse_numbers(path: Path, line_no: int, fields: list[str]) -> list[float]:
    try:
        return [float(v) for v in fields]
    except ValueError:
        raise _malformed(path, line_no, f"not a number in {' '.join(fields)!r}") from None


def read_prediction_file(path: str | Path) -> tuple[str, np.ndarray]:
    """One submission file -> (image name, float64 [k, 5] (x, y, w, h, score)).

    Blank lines are skipped (as the official reader does). Raises ``ValueError`` naming
    ``file:line`` for a missing header, a count that does not match the detection lines, a line
    without exactly 5 numbers, or a value that is not finite.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise _malformed(path, 1, "the first line must be the image name")
    name = _image_key(lines[0])
    if name != path.stem:
        raise _malformed(path, 1, f"image name {name!r} differs from the file name {path.stem!r}")
    if len(lines) < HEADER_LINES:
        raise _malformed(path, 2, "the detection count is missing")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise _malformed(path, 2, f"the detection count {lines[1].strip()!r} is not an integer") from None
    if count < 0:
        raise _malformed(path, 2, f"negative detection count {count}")
    numbered = [(no, line.split()) for no, line in enumerate(lines[HEADER_LINES:], HEADER_LINES + 1)
                if line.strip()]
    if len(numbered) != count:
        raise _malformed(path, 2, f"the file says {count} detections but has {len(numbered)} lines")
    for no, fields in numbered:
        if len(fields) != FIELDS_PER_LINE:
            raise _malformed(path, no, f"{len(fields)} values instead of {FIELDS_PER_LINE}")
    try:
        dets = np.array([fields for _, fields in numbered], dtype=np.float64).reshape(-1, FIELDS_PER_LINE)
    except ValueError:  # parse line by line to name the offending one
        dets = np.array([_parse_numbers(path, no, fields) for no, fields in numbered])
    not_finite = np.flatnonzero(~np.isfinite(dets).all(axis=1))
    if not_finite.size:
        no, fields = numbered[not_finite[0]]
        raise _malformed(path, no, f"non-finite value in {' '.join(fields)!r}")
    return name, dets


def read_predictions(pred_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """A submission folder -> ``{event: {image name: float64 [k, 5] (x, y, w, h, score)}}``.

    Every sub-folder is an event and every ``*.txt`` file in it an image. Other entries (stray
    files, hidden files) are skipped and counted in a warning. Each file's first line must name
    the image of its file name (``ValueError`` naming ``file:1`` otherwise).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found (expected EVENT/IMAGE.txt files)")
    predictions: dict[str, dict[str, np.ndarray]] = {}
    skipped = []
    for event_dir in sorted(pred_dir.iterdir()):
        if not event_dir.is_dir():
            skipped.append(event_dir)
            continue
        per_image = predictions.setdefault(event_dir.name, {})
        for path in sorted(event_dir.iterdir()):
            if path.suffix != PREDICTION_SUFFIX or not path.is_file():
                skipped.append(path)
                continue
            name, dets = read_prediction_file(path)
            per_image[name] = dets
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:3])
        warnings.warn(f"{pred_dir}: skipped {len(skipped)} entries that are not EVENT/IMAGE.txt "
                      f"files (e.g. {shown})", stacklevel=2)
    return predictions


def write_predictions(pred_dir: str | Path, event: str, image_name: str, dets) -> Path:
    """Write one submission file ``pred_dir/event/image_name.txt`` and return its path.

    dets: [k, 5] (x, y, w, h, score) in pixels (numpy array, tensor or nested list); values are
    written in full precision, so ``read_prediction_file`` gives them back exactly.
    image_name: the image name with or without its ``.jpg`` suffix.
    """
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        dets = dets.reshape(0, FIELDS_PER_LINE)
    if dets.ndim != 2 or dets.shape[1] != FIELDS_PER_LINE:
        raise ValueError(f"{event}/{image_name}: dets must be [k, 5] (x, y, w, h, score), "
                         f"got shape {tuple(dets.shape)}")
    if not np.isfinite(dets).all():
        raise ValueError(f"{event}/{image_name}: dets contain NaN or infinite values")
    name = _image_key(image_name)
    path = Path(pred_dir) / event / f"{name}{PREDICTION_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in dets)
    path.write_text(f"{name}\n{len(dets)}\n{body}")
    return path
