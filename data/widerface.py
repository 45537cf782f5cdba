"""WIDER FACE in the homework's layout, as a ``torch.utils.data.Dataset``.

Layout (real WIDER FACE with the RetinaFace labels, or the embedded set of ``data/synthetic.py``)::

    ROOT/train/images/<event>/<name>.jpg     ROOT/train/label.txt
    ROOT/val/images/<event>/<name>.jpg       ROOT/val/label.txt
    ROOT/val/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat   (evaluation)

The label format itself lives in ``data/labels.py`` (re-exported here); the official WIDER FACE
annotations are read and converted by ``data/wider_official.py``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.labels import (TARGET_COLUMNS, DroppedFacesWarning, LabelFormatError,
                         read_labels, write_labels)

__all__ = ["WiderFaceDataset", "detection_collate", "read_labels", "write_labels",
           "LabelFormatError", "DroppedFacesWarning", "clip_boxes_to_image"]

SPLITS = ("train", "val")
LABEL_FILE = "label.txt"
IMAGES_DIR = "images"
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height
MISSING_SHOWN = 5  # how many missing image paths an error message lists
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
JPEG_END_SEARCH = 4096  # bytes at the end of a JPEG searched for its end marker (trailers exist)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as ``cv2.imread`` returns it, read from the header only."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION_TAG) in EXIF_TRANSPOSED:
                width, height = height, width  # cv2.imread applies the EXIF rotation
    except OSError as err:
        raise OSError(f"{path}: not a readable image ({err})") from err
    return width, height


def load_image(path: Path) -> np.ndarray:
    """An image as uint8 BGR ``[H, W, 3]``; grayscale and RGBA images are converted to BGR."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise OSError(f"{path}: cannot read image ({err})") from err
    # libjpeg decodes a truncated JPEG as grey without an error: look for its end marker.
    if data.startswith(JPEG_START) and JPEG_END not in data[-JPEG_END_SEARCH:]:
        raise OSError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: corrupt or not an image")
    return image


def clip_boxes_to_image(targets: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Clip boxes to the image; drop boxes that lie wholly outside it.

    targets: float32 ``[n, 15]`` (x1, y1, x2, y2, landmarks, flag) in pixels.
    Returns ``(clipped targets [m, 15], number of boxes clipped, number dropped)``; landmarks are
    left as they are (the augmentation copes with landmarks outside the image).
    """
    boxes = targets[:, :4]
    clipped = np.stack([boxes[:, 0].clip(0, width), boxes[:, 1].clip(0, height),
                        boxes[:, 2].clip(0, width), boxes[:, 3].clip(0, height)], axis=1)
    changed = (clipped != boxes).any(axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    out = targets.copy()
    out[:, :4] = clipped
    return out[keep], int((changed & keep).sum()), int((~keep).sum())


class WiderFaceDataset(Dataset):
    """Images and face targets of ``root/<split>`` in the homework's layout.

    ``ds[i]`` without a transform: ``(image uint8 BGR [H, W, 3], targets float32 [n, 15] pixels)``,
    rows ``x1, y1, x2, y2, l0x, l0y, ..., l4x, l4y, flag``. With a transform:
    ``transform(image, targets, rng)`` where ``rng = np.random.default_rng((seed, epoch, i))``, so
    the augmentation of a sample depends only on (seed, epoch, index): the same for any number of
    DataLoader workers, processes or resumes. Call ``set_epoch`` at the start of every epoch.

    Boxes reaching outside their image are clipped (counted, one warning for the whole split).
    """

    def __init__(self, root: str | Path, split: str = "train", transform=None, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split_dir = self.root / split
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        label_file = self.split_dir / LABEL_FILE
        if not label_file.is_file():
            raise FileNotFoundError(
                f"{label_file}: label file not found; expected the layout ROOT/{split}/{LABEL_FILE} "
                f"and ROOT/{split}/{IMAGES_DIR}/; make the embedded dataset there with "
                f"`python -m data.synthetic --out {self.root}` (from the kit's root folder) or see the "
                f"README for real WIDER FACE")
        entries = read_labels(label_file)
        self.paths = [self.split_dir / IMAGES_DIR / image for image, _ in entries]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) listed in {label_file} do not exist, "
                                    f"e.g. {missing[:MISSING_SHOWN]}")
        self.targets, clipped, dropped = [], 0, 0
        for path, (_, targets) in zip(self.paths, entries):
            width, height = image_size(path)
            targets, n_clipped, n_dropped = clip_boxes_to_image(targets, width, height)
            self.targets.append(targets)
            clipped, dropped = clipped + n_clipped, dropped + n_dropped
        if clipped or dropped:
            warnings.warn(f"{label_file}: clipped {clipped} box(es) to their image and dropped "
                          f"{dropped} lying wholly outside it", DroppedFacesWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.paths)

    def image_path(self, i: int) -> Path:
        return self.paths[i]

    def image_id(self, i: int) -> tuple[str, str]:
        """``(event, image name without extension)``, as the official ground truth names images."""
        path = self.paths[i]
        return path.parent.name, path.stem

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self.paths):
            raise IndexError(f"index {i} out of range for {len(self.paths)} images")
        image = load_image(self.paths[i])
        targets = self.targets[i].copy()
        if self.transform is None:
            return image, targets
        rng = np.random.default_rng((self.seed, self.epoch, i))
        return self.transform(image, targets, rng)


def detection_collate(batch):
    """Stack a batch of ``(image [3, S, S], targets [n_i, 15])`` samples.

    Returns ``(images float32 [B, 3, S, S] tensor, list of B float32 [n_i, 15] tensors)``. All
    images must have the same size (use a transform such as ``data.augment.TrainAugment``).
    """
    images, targets = [], []
    for image, target in batch:
        images.append(torch.as_tensor(image, dtype=torch.float32))
        targets.append(torch.as_tensor(target, dtype=torch.float32).reshape(-1, TARGET_COLUMNS))
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in a batch must share one shape [3, S, S]; got {sorted(shapes)} "
                         f"(resize them with a transform such as data.augment.TrainAugment)")
    return torch.stack(images, out=_shared_batch(images)), targets


def _shared_batch(images: list[torch.Tensor]) -> torch.Tensor | None:
    """In a DataLoader worker, an empty batch tensor in shared memory, so the batch reaches the
    main process without one more copy (as torch's default_collate does; ~25% more batches/s
    with 2 workers on 2 cores). None elsewhere, or where this torch lacks the storage call."""
    if torch.utils.data.get_worker_info() is None:
        return None
    nbytes = len(images) * images[0].numel() * images[0].element_size()
    try:
        storage = images[0].untyped_storage()._new_shared(nbytes)
    except (AttributeError, RuntimeError):
        return None
    return torch.empty(0, dtype=images[0].dtype).set_(storage).view(len(images), *images[0].shape)

