"""The homework's ``label.txt`` format (the RetinaFace WIDER FACE labels): strict reader and writer.

A file is a list of images, each a header line followed by its faces::

    # 0--Parade/0_Parade_marchingband_1_849.jpg
    449 330 122 149 488.9 373.6 0.0 542.1 376.4 0.0 515.0 412.8 0.0 485.2 425.9 0.0 538.4 431.5 0.0 0.82
    78 221 7 8

A face line is either ``x y w h`` (4 fields: no landmarks) or ``x y w h`` followed by the five
landmarks as ``lx ly v`` triples (left eye, right eye, nose tip, left mouth corner, right mouth
corner; ``v`` is the annotators' visibility value, not used) and one trailing value (20 fields).
Landmarks written as ``-1`` mean "absent".

In memory each image's faces are a float32 array ``[n, 15]`` in the homework's target layout
``x1, y1, x2, y2, l0x, l0y, ..., l4x, l4y, flag`` (pixels; ``flag`` 1 = landmarks present,
-1 = absent, and then all ten landmark coordinates are -1). An image without faces gives ``[0, 15]``.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

TARGET_COLUMNS = 15  # x1, y1, x2, y2, 5 landmarks (x, y), flag
BOX_ONLY_FIELDS = 4  # x y w h
FULL_FIELDS = 20  # x y w h, 5 x (lx ly v), trailing value
NUM_LANDMARKS = 5
ABSENT = -1.0  # landmark coordinate / flag value meaning "no landmarks"
PRESENT = 1.0
HEADER_PREFIX = "#"
WRITE_DECIMALS, WRITE_DIGITS = 4, 10  # how coordinates are written


class LabelFormatError(ValueError):
    """A label file's content is malformed; the message starts ``path:line:``."""


class DroppedFacesWarning(UserWarning):
    """Faces were left out of the labels (degenerate boxes, partial landmarks); says how many."""


def _fail(path: Path, line_no: int, message: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line_no}: {message}")


def _parse_numbers(path: Path, line_no: int, fields: list[str]) -> list[float]:
    values = []
    for column, field in enumerate(fields, start=1):
        try:
            value = float(field)
        except ValueError:
            raise _fail(path, line_no, f"field {column} is {field!r}; expected a number") from None
        if not math.isfinite(value):
            raise _fail(path, line_no, f"field {column} is {field!r}; expected a finite number")
        values.append(value)
    return values


def face_row(values: list[float]) -> tuple[np.ndarray, bool]:
    """One face line's numbers (4 or 20 of them) as a target row ``[15]``.

    Returns the row and whether some, but not all, landmark coordinates were -1 (then the whole
    landmark set is marked absent, as the reference RetinaFace loader does).
    """
    x, y, w, h = values[:4]
    row = np.full(TARGET_COLUMNS, ABSENT, dtype=np.float32)
    row[:4] = (x, y, x + w, y + h)
    partial = False
    if len(values) == FULL_FIELDS:
        coords = np.array([values[4 + 3 * k + c] for k in range(NUM_LANDMARKS) for c in (0, 1)],
                          dtype=np.float32)  # [10] l0x, l0y, ..., l4x, l4y
        absent = coords == ABSENT
        if not absent.any():
            row[4:14] = coords
            row[14] = PRESENT
        partial = bool(absent.any() and not absent.all())
    return row, partial


def read_labels(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Read a ``label.txt``: ``[(relative image path, float32 [n, 15] targets in pixels), ...]``.

    Raises ``LabelFormatError`` (``path:line: ...``) for every malformed content, and
    ``FileNotFoundError`` when the file does not exist. Faces with ``w <= 0`` or ``h <= 0`` are
    dropped and reported once, with their count, as a ``DroppedFacesWarning``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found")
    raw_lines = path.read_bytes().split(b"\n")
    entries: list[tuple[str, list[np.ndarray]]] = []
    degenerate, partial_landmarks, first_dropped = 0, 0, 0
    for line_no, raw in enumerate(raw_lines, start=1):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
            raw = raw[3:]
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise _fail(path, line_no, f"bytes that are not UTF-8 text ({err.reason} at column "
                                       f"{err.start + 1}); expected a text label file") from None
        if not line:
            continue
        if line.startswith(HEADER_PREFIX):
            image = line[len(HEADER_PREFIX):].strip()
            if not image:
                raise _fail(path, line_no, "empty image path; expected '# <event>/<image>.jpg'")
            entries.append((image, []))
            continue
        if not entries:
            raise _fail(path, line_no, "face line before any image header; expected "
                                       "'# <event>/<image>.jpg' first")
        fields = line.split()
        if len(fields) not in (BOX_ONLY_FIELDS, FULL_FIELDS):
            truncated = line_no == len(raw_lines) and len(fields) < FULL_FIELDS
            what = "truncated line" if truncated else "wrong number of fields"
            raise _fail(path, line_no, f"{what}: {len(fields)} fields; expected {BOX_ONLY_FIELDS} "
                                       f"(x y w h) or {FULL_FIELDS} (x y w h, 5 x 'lx ly v', value)")
        values = _parse_numbers(path, line_no, fields)
        if values[2] <= 0 or values[3] <= 0:
            degenerate += 1
            first_dropped = first_dropped or line_no
            continue
        row, partial = face_row(values)
        partial_landmarks += partial
        entries[-1][1].append(row)
    if degenerate:
        warnings.warn(f"{path}: dropped {degenerate} face(s) with w <= 0 or h <= 0 "
                      f"(first at line {first_dropped})", DroppedFacesWarning, stacklevel=2)
    if partial_landmarks:
        warnings.warn(f"{path}: {partial_landmarks} face(s) had some landmark coordinates -1; "
                      f"their landmarks are marked absent", DroppedFacesWarning, stacklevel=2)
    return [(image, np.stack(rows) if rows else np.zeros((0, TARGET_COLUMNS), np.float32))
            for image, rows in entries]


def _number(value: float) -> str:
    # Pixel coordinates: 1e-4 px is plenty, and hides float32 noise such as 6.029999.
    return f"{round(float(value), WRITE_DECIMALS):.{WRITE_DIGITS}g}"


def format_face(row: np.ndarray, landmarks: bool = True, score: float = 1.0) -> str:
    """One target row ``[15]`` (x1, y1, x2, y2, landmarks, flag) as a ``label.txt`` face line.

    ``landmarks=False`` writes the 4-field ``x y w h`` form.
    """
    x1, y1, x2, y2 = (float(v) for v in row[:4])
    fields = [_number(x1), _number(y1), _number(x2 - x1), _number(y2 - y1)]
    if landmarks:
        if row[14] == PRESENT:
            for k in range(NUM_LANDMARKS):
                fields += [_number(row[4 + 2 * k]), _number(row[5 + 2 * k]), "0.0"]
            fields.append(_number(score))
        else:
            fields += ["-1.0"] * (3 * NUM_LANDMARKS + 1)
    return " ".join(fields)


def write_labels(path: str | Path, entries: list[tuple[str, np.ndarray]],
                 landmarks: bool = True) -> None:
    """Write ``[(relative image path, [n, 15] targets), ...]`` as a ``label.txt`` (read_labels' inverse).

    ``landmarks=False`` writes box-only ``x y w h`` lines (as the RetinaFace val labels).
    """
    lines = []
    for image, targets in entries:
        if not image or "\n" in image:
            raise ValueError(f"image path {image!r} must be non-empty and on one line")
        targets = np.asarray(targets, dtype=np.float32).reshape(-1, TARGET_COLUMNS)
        lines.append(f"{HEADER_PREFIX} {image}")
        lines += [format_face(row, landmarks) for row in targets]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
