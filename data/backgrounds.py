"""Photographic backgrounds for the embedded dataset, from the images that ship inside scikit-image.

Each background is a random crop of one (sometimes two, joined along a soft horizon) of these
photographs and textures, scaled, mirrored and colour-jittered. Two photographs show real people
(``astronaut``, ``camera``): only the parts of them without a face are ever used, so the
backgrounds hold no unannotated real face.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

# name: (weight, allowed regions as (x0, y0, x1, y1) fractions of the image)
WHOLE = ((0.0, 0.0, 1.0, 1.0),)
SOURCES = {
    "coffee.png": (2.0, WHOLE),
    "chelsea.png": (1.0, WHOLE),
    "motorcycle_left.png": (2.0, WHOLE),
    "rocket.jpg": (2.0, WHOLE),
    "astronaut.png": (1.5, ((0.62, 0.0, 1.0, 1.0), (0.0, 0.58, 1.0, 1.0))),
    "camera.png": (1.0, ((0.0, 0.52, 1.0, 1.0), (0.66, 0.0, 1.0, 1.0))),
    "hubble_deep_field.jpg": (0.7, WHOLE),
    "retina.jpg": (0.5, ((0.15, 0.15, 0.85, 0.85),)),
    "ihc.png": (1.0, WHOLE),
    "coins.png": (1.0, WHOLE),
    "moon.png": (1.0, WHOLE),
    "brick.png": (1.5, WHOLE),
    "grass.png": (1.5, WHOLE),
    "gravel.png": (1.5, WHOLE),
    "page.png": (0.7, WHOLE),
    "text.png": (0.7, WHOLE),
    "color.png": (0.4, ((0.15, 0.15, 0.85, 0.85),)),
    "chessboard_RGB.png": (0.3, WHOLE),
    "clock_motion.png": (0.3, WHOLE),
}
MIN_CROP_FRACTION = 0.25  # smallest crop, as a fraction of the allowed region's side
HORIZON_PROBABILITY = 0.35
GRADIENT_PROBABILITY = 0.4
TINT_PROBABILITY = 0.7
NOISE_SEED = 20240


@dataclass
class _Source:
    image: np.ndarray  # uint8 BGR [H, W, 3]
    weight: float
    regions: tuple
    grey: bool


def _load(name: str) -> np.ndarray:
    path = Path(skimage.data.__file__).parent / name
    try:  # Pillow, not cv2: libpng prints a warning for the colour profile of some of these files
        with Image.open(path) as picture:
            rgb = np.asarray(picture.convert("RGB"))
    except OSError as err:
        raise FileNotFoundError(f"{path}: scikit-image's sample image is missing or unreadable; the "
                                f"embedded dataset needs scikit-image's bundled data (reinstall "
                                f"scikit-image)") from err
    return np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as the rest of the kit


class BackgroundBank:
    """The background photographs, loaded once; ``sample`` makes one background.

    ``noise_size`` bounds the largest picture side the sensor noise covers.
    """

    def __init__(self, noise_size: int = 1024):
        self.sources = []
        for name, (weight, regions) in SOURCES.items():
            image = _load(name)
            grey = bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
            self.sources.append(_Source(image, weight, regions, grey))
        weights = np.array([s.weight for s in self.sources])
        self.probabilities = weights / weights.sum()
        # Drawn once from a fixed seed, so every picture's noise is still a function of its seed.
        self.noise_tile = np.random.default_rng(NOISE_SEED).standard_normal(
            (noise_size, noise_size), dtype=np.float32)

    def _crop(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        source = self.sources[rng.choice(len(self.sources), p=self.probabilities)]
        img_h, img_w = source.image.shape[:2]
        x0, y0, x1, y1 = source.regions[rng.integers(len(source.regions))]
        rx0, ry0 = int(x0 * img_w), int(y0 * img_h)
        region_w, region_h = int(x1 * img_w) - rx0, int(y1 * img_h) - ry0
        # Largest crop of the output's aspect ratio inside the region, then a random fraction of it.
        full = min(region_w / width, region_h / height)
        scale = full * rng.uniform(MIN_CROP_FRACTION, 1.0)
        cw, ch = max(2, int(width * scale)), max(2, int(height * scale))
        cx = rx0 + rng.integers(0, region_w - cw + 1)
        cy = ry0 + rng.integers(0, region_h - ch + 1)
        crop = source.image[cy:cy + ch, cx:cx + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        if source.grey and rng.random() < TINT_PROBABILITY:
            crop *= rng.uniform(0.7, 1.2, 3).astype(np.float32)  # colour a grey texture
        return crop

    def noise(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """Unit Gaussian sensor noise, float32 ``[height, width, 1]`` (a random window of a tile)."""
        y = rng.integers(0, self.noise_tile.shape[0] - height + 1)
        x = rng.integers(0, self.noise_tile.shape[1] - width + 1)
        return self.noise_tile[y:y + height, x:x + width, None]

    def sample(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """A background, float32 BGR ``[height, width, 3]``, roughly in [0, 255] (not clipped)."""
        image = self._crop(rng, width, height)
        if rng.random() < HORIZON_PROBABILITY:
            other = self._crop(rng, width, height)
            horizon = rng.uniform(0.25, 0.75) * height
            soft = rng.uniform(2, 40)
            ramp = np.clip((np.arange(height, dtype=np.float32) - horizon) / soft + 0.5, 0, 1)
            image = image * (1 - ramp[:, None, None]) + other * ramp[:, None, None]
        # Colour jitter in one linear map per pixel: saturation s, contrast c, brightness b.
        s, c, b = rng.uniform(0.5, 1.4), rng.uniform(0.7, 1.25), rng.uniform(-30, 30)
        matrix = c * s * np.eye(3) + c * (1 - s) / 3 * np.ones((3, 3))
        offset = 128 * (1 - c) + b
        image = cv2.transform(image, np.hstack([matrix, np.full((3, 1), offset)]).astype(np.float32))
        if rng.random() < GRADIENT_PROBABILITY:
            angle = rng.uniform(0, 2 * np.pi)
            xs = np.linspace(-1, 1, width, dtype=np.float32) * np.float32(np.cos(angle))
            ys = np.linspace(-1, 1, height, dtype=np.float32) * np.float32(np.sin(angle))
            image *= (1 + np.float32(rng.uniform(0.1, 0.4)) * (xs[None, :] + ys[:, None]))[..., None]
        return image
