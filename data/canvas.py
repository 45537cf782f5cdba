"""A small drawing surface for sprites: premultiplied colour, coverage and a "visible skin" mask.

Shapes are drawn with OpenCV's anti-aliased primitives at sub-pixel precision. Every shape is
drawn into the three layers at once:

- ``bgra`` uint8 ``[H, W, 4]``: BGR premultiplied by coverage (so drawing over it with
  anti-aliasing is exact "over" compositing, and resizing or blurring the sprite stays correct),
  and the coverage itself as the fourth channel (one drawing call paints both);
- ``skin`` uint8 ``[H, W]``: 255 where the face's own skin shows (the face region minus what hair,
  masks or sunglasses hide), used to measure occlusion.

Point coordinates are OpenCV's: integer = pixel centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_BITS = 4
SUBPIXEL = 1 << SUBPIXEL_BITS
KEEP_SKIN = -1  # skin value meaning "leave the skin mask as it is"
BLUR_MIN_SIGMA = 0.3  # below this a Gaussian blur changes nothing visible


def _fixed(points) -> np.ndarray:
    return np.rint(np.asarray(points, np.float64) * SUBPIXEL).astype(np.int32)


class Canvas:
    """Layers of one sprite; ``height x width`` pixels."""

    def __init__(self, height: int, width: int):
        self.bgra = np.zeros((height, width, 4), np.uint8)
        self.skin = np.zeros((height, width), np.uint8)

    def _layers(self, colour, skin: int) -> list:
        layers = [(self.bgra, (float(colour[0]), float(colour[1]), float(colour[2]), 255.0))]
        if skin != KEEP_SKIN:
            layers.append((self.skin, skin))
        return layers

    def polygon(self, points, colour, skin: int = KEEP_SKIN, opacity: float = 1.0) -> None:
        """Filled polygon through ``points [N, 2]``."""
        pts = [_fixed(points)]
        self._draw(lambda img, c: cv2.fillPoly(img, pts, c, cv2.LINE_AA, SUBPIXEL_BITS),
                   colour, skin, opacity)

    def ellipse(self, centre, axes, angle_deg: float, colour, skin: int = KEEP_SKIN,
                opacity: float = 1.0, thickness: float = -1, arc=(0, 360)) -> None:
        """Ellipse (filled when ``thickness < 0``) of half-axes ``axes`` turned by ``angle_deg``."""
        c, ax = tuple(_fixed(centre)), tuple(int(v) for v in _fixed(np.maximum(axes, 0.05)))
        width = -1 if thickness < 0 else max(1, int(round(thickness)))
        self._draw(lambda img, col: cv2.ellipse(img, c, ax, angle_deg, arc[0], arc[1], col, width,
                                                cv2.LINE_AA, SUBPIXEL_BITS), colour, skin, opacity)

    def polyline(self, points, colour, thickness: float, skin: int = KEEP_SKIN,
                 opacity: float = 1.0, closed: bool = False) -> None:
        """Open (or closed) line through ``points [N, 2]``, ``thickness`` pixels wide."""
        pts = [_fixed(points)]
        width = max(1, int(round(thickness)))
        self._draw(lambda img, c: cv2.polylines(img, pts, closed, c, width, cv2.LINE_AA,
                                                SUBPIXEL_BITS), colour, skin, opacity)

    def _draw(self, draw, colour, skin: int, opacity: float) -> None:
        if opacity >= 1.0:
            for layer, value in self._layers(colour, skin):
                draw(layer, value)
            return
        # Translucent: draw the coverage once, then blend every layer with it.
        cover = np.zeros(self.skin.shape, np.uint8)
        draw(cover, 255)
        ys, xs = np.nonzero(cover)
        if len(ys) == 0:
            return
        window = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        weight = cover[window].astype(np.float32) * (opacity / 255.0)
        for layer, value in self._layers(colour, skin):
            part = layer[window].astype(np.float32)
            w = weight[..., None] if part.ndim == 3 else weight
            layer[window] = np.round(part * (1 - w) + np.asarray(value, np.float32) * w).astype(np.uint8)


@dataclass
class Sprite:
    """A finished drawing to composite at integer offset ``(x0, y0)`` of an image.

    colour: float32 ``[h, w, 3]`` BGR premultiplied by ``alpha``; alpha, skin: float32 ``[h, w]``
    in [0, 1].
    """

    colour: np.ndarray
    alpha: np.ndarray
    skin: np.ndarray
    x0: int
    y0: int


def finish(canvas: Canvas, x0: int, y0: int, supersample: int, blur_sigma: float = 0.0) -> Sprite:
    """Reduce a canvas drawn ``supersample`` times larger to a ``Sprite``; blur it by ``blur_sigma`` px."""
    height, width = canvas.skin.shape[0] // supersample, canvas.skin.shape[1] // supersample
    bgra, skin = canvas.bgra, canvas.skin
    if supersample > 1:
        bgra, skin = (cv2.resize(x, (width, height), interpolation=cv2.INTER_AREA) for x in (bgra, skin))
    colour = bgra[..., :3].astype(np.float32)
    alpha = bgra[..., 3].astype(np.float32) * np.float32(1 / 255)
    skin = skin.astype(np.float32) * np.float32(1 / 255)
    if blur_sigma > BLUR_MIN_SIGMA:
        colour, alpha = (cv2.GaussianBlur(x, (0, 0), blur_sigma) for x in (colour, alpha))
        if skin.any():
            skin = cv2.GaussianBlur(skin, (0, 0), blur_sigma)
    return Sprite(colour, alpha, skin, x0, y0)
