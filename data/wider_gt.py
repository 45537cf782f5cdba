"""The official WIDER FACE validation ground truth: the four ``.mat`` files, read and written.

The official evaluation reads a ground-truth folder holding

- ``wider_face_val.mat``: ``event_list`` (E x 1 cell of event folder names such as ``0--Parade``),
  ``file_list`` (per event, an n x 1 cell of image names without extension) and
  ``face_bbx_list`` (per event, per image, a k x 4 array of ``x, y, w, h`` boxes in pixels);
- ``wider_{easy,medium,hard}_val.mat``: the same lists plus ``gt_list`` (per event, per image, the
  **1-based** indices of the faces kept in that setting; every other face is "ignore").

The embedded dataset (``data/synthetic.py``) writes its validation ground truth in exactly this
form, so one evaluation code path serves real WIDER FACE and the embedded set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import io

import numpy as np
import scipy.io

SUBSETS = ("easy", "medium", "hard")
ALL_FACES_FILE = "wider_face_val.mat"
# scipy writes the creation time into the 116-byte free-text header of a .mat file; a fixed text
# instead makes the same ground truth the same bytes (MATLAB and scipy ignore the text).
MAT_HEADER_BYTES = 116
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by the face-detection course kit (data/wider_gt.py)"


def subset_file(subset: str) -> str:
    """File name of one setting's ``.mat`` file, e.g. ``wider_easy_val.mat``."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    return f"wider_{subset}_val.mat"


@dataclass
class WiderGroundTruth:
    """Validation ground truth, event by event, image by image.

    events: event folder names, e.g. ``['0--Parade', ...]``.
    images: ``images[e]`` the image names (no extension) of event ``e``.
    boxes:  ``boxes[e][i]`` float64 ``[k, 4]`` faces of that image as ``(x, y, w, h)`` pixels.
    keep:   ``keep[subset][e][i]`` int64 ``[m]`` 1-based indices into ``boxes[e][i]`` of the
            faces kept in ``subset`` (``'easy'``, ``'medium'``, ``'hard'``); the others are ignored.
    """

    events: list[str]
    images: list[list[str]]
    boxes: list[list[np.ndarray]]
    keep: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.events) == len(self.images) == len(self.boxes)):
            raise ValueError(
                f"events, images and boxes must have one entry per event; got "
                f"{len(self.events)}, {len(self.images)}, {len(self.boxes)}")
        for e, event in enumerate(self.events):
            if len(self.images[e]) != len(self.boxes[e]):
                raise ValueError(f"event {event!r}: {len(self.images[e])} images but "
                                 f"{len(self.boxes[e])} box arrays")
        for subset, per_event in self.keep.items():
            if subset not in SUBSETS:
                raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")
            for e, event in enumerate(self.events):
                for i, name in enumerate(self.images[e]):
                    idx = per_event[e][i]
                    n = len(self.boxes[e][i])
                    if idx.size and (idx.min() < 1 or idx.max() > n):
                        raise ValueError(f"{subset}: {event}/{name} keeps face indices "
                                         f"{idx.tolist()}, outside 1..{n}")

    def num_images(self) -> int:
        return sum(len(names) for names in self.images)


def _cell(items: list) -> np.ndarray:
    """A MATLAB n x 1 cell array holding ``items``."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: WIDER FACE ground-truth file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable .mat file ({err})") from err
    missing = [k for k in keys if k not in mat]
    if missing:
        raise ValueError(f"{path}: missing variables {missing}; expected {list(keys)}")
    return mat


def load_wider_gt(gt_dir: str | Path, subsets: tuple[str, ...] = SUBSETS) -> WiderGroundTruth:
    """Read ``wider_face_val.mat`` and the requested ``wider_<subset>_val.mat`` from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    mat = _load_mat(gt_dir / ALL_FACES_FILE, ("event_list", "file_list", "face_bbx_list"))
    events = [str(ev[0][0]) for ev in mat["event_list"]]
    images, boxes = [], []
    for e in range(len(events)):
        names = mat["file_list"][e][0]
        images.append([str(n[0][0]) for n in names])
        per_image = []
        for b in mat["face_bbx_list"][e][0]:
            arr = np.asarray(b[0], dtype=np.float64)
            per_image.append(arr.reshape(-1, 4))
        boxes.append(per_image)
    keep = {}
    for subset in subsets:
        path = gt_dir / subset_file(subset)
        sub = _load_mat(path, ("gt_list",))
        if len(sub["gt_list"]) != len(events):
            raise ValueError(f"{path}: gt_list has {len(sub['gt_list'])} events, "
                             f"{ALL_FACES_FILE} has {len(events)}")
        keep[subset] = [[np.asarray(idx[0], dtype=np.int64).reshape(-1) for idx in sub["gt_list"][e][0]]
                        for e in range(len(events))]
    return WiderGroundTruth(events, images, boxes, keep)


def save_wider_gt(gt: WiderGroundTruth, gt_dir: str | Path) -> None:
    """Write ``gt`` as the official four ``.mat`` files (``load_wider_gt`` reads them back)."""
    gt_dir = Path(gt_dir)
    gt_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "event_list": _cell(list(gt.events)),
        "file_list": _cell([_cell(list(names)) for names in gt.images]),
        "face_bbx_list": _cell([_cell([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in per_event])
                                for per_event in gt.boxes]),
    }
    _savemat(gt_dir / ALL_FACES_FILE, common)
    for subset, per_event in gt.keep.items():
        gt_list = _cell([_cell([np.asarray(idx, dtype=np.int32).reshape(-1, 1) for idx in per_image])
                         for per_image in per_event])
        _savemat(gt_dir / subset_file(subset), {**common, "gt_list": gt_list})


def _savemat(path: Path, variables: dict) -> None:
    """scipy's savemat with a fixed header text, so equal contents give equal files."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[:MAT_HEADER_BYTES] = MAT_HEADER.ljust(MAT_HEADER_BYTES)
    path.write_bytes(bytes(data))
