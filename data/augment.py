"""RetinaFace training augmentation on an image with boxes and 5 landmarks, and the eval transform.

Targets are float32 ``[n, 15]`` rows ``x1, y1, x2, y2, l0x, l0y, ..., l4x, l4y, flag`` (pixels on
input; flag 1 = landmarks present, -1 = absent, and absent landmarks stay exactly -1 throughout).
The training pipeline, in the order of the public RetinaFace ``preproc``:

1. random square crop: side = one of ``CROP_SCALES`` x the short side; accepted when at least one
   face lies wholly inside (any crop of an image without faces); keeps the faces whose centre is
   inside, clipped to the crop (``CROP_TRIES`` attempts, else the whole image is kept and padded
   to a square in step 3);
2. photometric distortion: brightness, contrast, saturation, hue, each with probability 1/2;
3. pad to square (only when no crop was found), filled with the mean colour;
4. horizontal mirror with probability 1/2, which also swaps the eyes (l0 <-> l1) and the mouth
   corners (l3 <-> l4) so that l0 stays the image-left eye;
5. resize to ``image_size`` with a random interpolation, subtract ``BGR_MEAN``, HWC -> CHW, and
   divide coordinates by ``image_size`` (so they lie in [0, 1]).

All randomness comes from the ``rng`` (``numpy.random.Generator``) passed in, so a sample's
augmentation is a function of its seed alone.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

BGR_MEAN = (104, 117, 123)  # per-channel mean of the public RetinaFace training (B, G, R)
CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
CROP_TRIES = 250
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # OpenCV hue units (0..179)
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
                  cv2.INTER_LANCZOS4)
MIRROR_ORDER = [0, 1, 2, 3, 6, 7, 4, 5, 8, 9, 12, 13, 10, 11, 14]  # columns after a mirror
ABSENT = -1.0
TARGET_COLUMNS = 15


def _check(image: np.ndarray, targets) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        got = getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None)
        raise ValueError(f"image must be a uint8 BGR array [H, W, 3]; got {got}")
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or targets.shape[1] != TARGET_COLUMNS:
        raise ValueError(f"targets must be [n, {TARGET_COLUMNS}] (x1, y1, x2, y2, 5 landmarks, "
                         f"flag); got shape {targets.shape}")
    return targets


def _present(targets: np.ndarray) -> np.ndarray:
    return targets[:, 14] != ABSENT


def shift_and_scale(targets: np.ndarray, dx: float, dy: float, scale: float) -> np.ndarray:
    """``(coord - (dx, dy)) * scale`` on boxes and present landmarks; absent ones stay -1."""
    out = targets.copy()
    offset = np.tile(np.float32([dx, dy]), 7)  # [14] x, y alternating over box and landmarks
    present = _present(targets)
    out[:, :4] = (targets[:, :4] - offset[:4]) * scale
    out[present, 4:14] = (targets[present, 4:14] - offset[4:]) * scale
    return out


def random_square_crop(image: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
    """Step 1. Returns ``(image, targets, roi)``; ``roi = (x0, y0, side)`` of the crop taken, or
    ``None`` (image and targets unchanged) when no attempt kept a whole face."""
    height, width = image.shape[:2]
    short = min(height, width)
    boxes = targets[:, :4]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [n, 2]
    for _ in range(CROP_TRIES):
        side = max(1, int(short * CROP_SCALES[rng.integers(len(CROP_SCALES))]))
        x0 = int(rng.integers(0, width - side + 1))
        y0 = int(rng.integers(0, height - side + 1))
        x1, y1 = x0 + side, y0 + side
        whole = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
        if len(targets) and not whole.any():
            continue
        keep = (centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 1] > y0) & (centres[:, 1] < y1)
        cropped = shift_and_scale(targets[keep], x0, y0, 1.0)
        cropped[:, :4] = np.clip(cropped[:, :4], 0, side)
        return image[y0:y1, x0:x1], cropped, (x0, y0, side)
    return image, targets, None


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Step 2: brightness, contrast, saturation and hue jitter (each with probability 1/2) on a
    uint8 BGR image; contrast comes before or after the colour changes, at random."""
    levels = np.arange(256, dtype=np.float32)
    if rng.random() < 0.5:
        image = cv2.LUT(image, _lut(levels + rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)))
    contrast_first = rng.random() < 0.5
    contrast = rng.uniform(*CONTRAST_RANGE) if rng.random() < 0.5 else None
    if contrast_first and contrast is not None:
        image = cv2.LUT(image, _lut(levels * contrast))
    saturation = rng.uniform(*SATURATION_RANGE) if rng.random() < 0.5 else None
    hue = int(rng.integers(-HUE_DELTA, HUE_DELTA + 1)) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        if saturation is not None:
            hsv[..., 1] = cv2.LUT(hsv[..., 1], _lut(levels * saturation))
        if hue is not None:
            hue_lut = ((np.arange(256) + hue) % 180).astype(np.uint8)  # hue is circular, 0..179
            hsv[..., 0] = cv2.LUT(hsv[..., 0], hue_lut)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if not contrast_first and contrast is not None:
        image = cv2.LUT(image, _lut(levels * contrast))
    return image


def pad_to_square(image: np.ndarray, fill=BGR_MEAN) -> np.ndarray:
    """Step 3: the image at the top-left of a square of side ``max(H, W)`` filled with ``fill``;
    coordinates do not change."""
    height, width = image.shape[:2]
    side = max(height, width)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    out[:height, :width] = image
    return out


def mirror(image: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: flip left-right; boxes and present landmarks follow (``x -> W - x``), and the
    left/right landmark pairs swap so that l0 is still the image-left eye."""
    width = image.shape[1]
    out = targets.copy()
    out[:, 0], out[:, 2] = width - targets[:, 2], width - targets[:, 0]
    present = _present(targets)
    out[present, 4:14:2] = width - targets[present, 4:14:2]
    return np.ascontiguousarray(image[:, ::-1]), out[:, MIRROR_ORDER]


def to_tensor(image: np.ndarray, rgb_mean=BGR_MEAN) -> torch.Tensor:
    """uint8 BGR ``[H, W, 3]`` -> float32 tensor ``[3, H, W]`` minus the per-channel mean."""
    hwc = np.subtract(image, np.asarray(rgb_mean, np.float32), dtype=np.float32)  # one pass
    return torch.from_numpy(hwc).permute(2, 0, 1)  # a view; batching makes it contiguous


class TrainAugment:
    """``(image uint8 BGR [H, W, 3], targets [n, 15] pixels, rng) -> (image float32 tensor
    [3, S, S] BGR minus ``rgb_mean``, targets float32 tensor [n, 15] in [0, 1] of S)``."""

    def __init__(self, image_size: int, rgb_mean=BGR_MEAN):
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        self.image_size = int(image_size)
        self.rgb_mean = tuple(rgb_mean)

    def geometric(self, image: np.ndarray, targets: np.ndarray, rng: np.random.Generator,
                  photometric: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-5 before normalisation: uint8 image ``[S, S, 3]`` and targets in S pixels."""
        targets = _check(image, targets)
        image, targets, roi = random_square_crop(image, targets, rng)
        if photometric:
            image = photometric_distort(image, rng)
        if roi is None:
            image = pad_to_square(image, self.rgb_mean)
        if rng.random() < 0.5:
            image, targets = mirror(image, targets)
        side = image.shape[0]
        interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
        image = cv2.resize(image, (self.image_size, self.image_size), interpolation=interpolation)
        targets = shift_and_scale(targets, 0.0, 0.0, self.image_size / side)
        targets[:, :4] = np.clip(targets[:, :4], 0, self.image_size)  # boxes stay in the image
        return image, targets

    def __call__(self, image: np.ndarray, targets, rng: np.random.Generator):
        image, targets = self.geometric(image, targets, rng)
        normalised = shift_and_scale(targets, 0.0, 0.0, 1.0 / self.image_size)
        return to_tensor(image, self.rgb_mean), torch.from_numpy(normalised)


class EvalTransform:
    """``(image uint8 BGR [H, W, 3], targets [n, 15] pixels, rng=None) -> (float32 tensor
    [3, H, W] minus ``rgb_mean``, targets as a float32 tensor, unchanged, in pixels)``."""

    def __init__(self, rgb_mean=BGR_MEAN):
        self.rgb_mean = tuple(rgb_mean)

    def __call__(self, image: np.ndarray, targets, rng: np.random.Generator | None = None):
        targets = _check(image, targets)
        return to_tensor(image, self.rgb_mean), torch.from_numpy(targets.copy())
