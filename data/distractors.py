"""Things in the embedded dataset's pictures that are not faces: distractors and occluders.

Distractors look like faces to a lazy detector (round, skin-coloured, face-sized, or a face's
parts without the face) but not to a careful eye: blobs and balls without features, rings and
discs, a lone eye or mouth. (People seen from behind are in ``data/face_render.py``.) Occluders
are hands, panels, poles and microphones drawn over faces. Every function returns a ``Sprite``
whose ``skin`` is empty: none of it is a face.
"""
from __future__ import annotations

import numpy as np

from data.canvas import Canvas, Sprite, finish
from data.face_model import SKIN_TONES

SUPERSAMPLE_BELOW = 40  # objects smaller than this (pixels) are drawn at 2x and reduced


class _Layout:
    """A canvas around ``centre`` reaching ``reach`` pixels each way, supersampled when small."""

    def __init__(self, centre, reach: float, blur_sigma: float = 0.0):
        self.k = 2 if reach < SUPERSAMPLE_BELOW else 1
        pad = int(np.ceil(3 * blur_sigma)) + 2
        self.x0 = int(np.floor(centre[0] - reach)) - pad
        self.y0 = int(np.floor(centre[1] - reach)) - pad
        size = int(np.ceil(2 * reach)) + 2 * pad + 1
        self.canvas = Canvas(size * self.k, size * self.k)
        self.centre = (np.array([centre[0] - self.x0, centre[1] - self.y0]) + 0.5) * self.k - 0.5
        self.blur = blur_sigma

    def px(self, offsets) -> np.ndarray:
        """Canvas pixels of ``offsets [N, 2]`` given in image pixels from the centre."""
        return self.centre + np.asarray(offsets, np.float64) * self.k

    def done(self, rng: np.random.Generator | None = None, radius: float = 1.0) -> Sprite:
        """The sprite; with ``rng``, lit from a random side like a round object of ``radius`` px."""
        sprite = finish(self.canvas, self.x0, self.y0, self.k, self.blur)
        if rng is not None:
            h, w = sprite.alpha.shape
            angle = rng.uniform(0, 2 * np.pi)
            centre = (self.centre + 0.5) / self.k - 0.5
            xs = (np.arange(w, dtype=np.float32) - centre[0]) * np.float32(np.cos(angle) / radius)
            ys = (np.arange(h, dtype=np.float32) - centre[1]) * np.float32(np.sin(angle) / radius)
            sprite.colour *= np.clip(1 + 0.4 * (xs[None, :] + ys[:, None]), 0.5, 1.5)[..., None]
        return sprite


def _colour(rng: np.random.Generator, skin_like: bool) -> np.ndarray:
    if skin_like:
        return np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float64) * rng.uniform(0.85, 1.1)
    return rng.uniform(20, 235, 3)


def render_blob(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A featureless round blob or ball of about ``size`` pixels (often skin-coloured)."""
    half = size / 2
    layout = _Layout(centre, half * 1.3, blur_sigma)
    axes = np.array([half * rng.uniform(0.7, 1.0), half * rng.uniform(0.8, 1.2)]) * layout.k
    colour = _colour(rng, rng.random() < 0.6)
    layout.canvas.ellipse(layout.centre, axes, rng.uniform(-30, 30), colour)
    if rng.random() < 0.3:  # a second lobe: a fist, a bun, a fruit
        offset = layout.px([rng.uniform(-0.5, 0.5) * half, rng.uniform(-0.6, 0.6) * half])
        layout.canvas.ellipse(offset, axes * 0.6, 0, colour * 0.9)
    if rng.random() < 0.5:
        spot = layout.px(rng.uniform(-0.4, 0.1, 2) * half)
        layout.canvas.ellipse(spot, axes * 0.18, 0, np.minimum(colour * 1.4 + 40, 255), opacity=0.6)
    return layout.done(rng, half)


def render_ring(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A disc with rims or spokes: a coin, plate, wheel or clock face."""
    radius = size / 2
    layout = _Layout(centre, radius * 1.05, blur_sigma)
    r = radius * layout.k
    fill = _colour(rng, False)
    layout.canvas.ellipse(layout.centre, (r, r * rng.uniform(0.6, 1.0)), rng.uniform(0, 180), fill)
    for scale in np.sort(rng.uniform(0.3, 0.95, rng.integers(1, 4))):
        layout.canvas.ellipse(layout.centre, (r * scale, r * scale), 0, fill * 0.6,
                              thickness=max(1.0, 0.06 * r))
    if rng.random() < 0.5:
        for angle in np.linspace(0, np.pi, rng.integers(3, 7), endpoint=False):
            d = np.array([np.cos(angle), np.sin(angle)]) * r * 0.9
            layout.canvas.polyline([layout.centre - d, layout.centre + d], fill * 0.5,
                                   max(1.0, 0.04 * r))
    return layout.done(rng, radius)


def render_face_part(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A face's part without the face: a lone eye with its brow, or a pair of lips."""
    layout = _Layout(centre, size * 0.6, blur_sigma)
    u = size * layout.k
    c = layout.centre
    if rng.random() < 0.5:
        layout.canvas.ellipse(c, (0.3 * u, 0.15 * u), 0, (226, 230, 236))
        layout.canvas.ellipse(c, (0.12 * u, 0.12 * u), 0, rng.uniform(30, 120, 3))
        layout.canvas.ellipse(c, (0.05 * u, 0.05 * u), 0, (15, 15, 20))
        brow = c + np.array([[-0.3, -0.25], [0, -0.33], [0.3, -0.27]]) * u
        layout.canvas.polyline(brow, rng.uniform(10, 80, 3), 0.08 * u)
    else:
        lip = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))]) * [0.7, 0.65, 1.0]
        pts = c + np.array([[-0.4, 0], [-0.1, -0.12], [0, -0.08], [0.1, -0.12], [0.4, 0],
                            [0.1, 0.14], [-0.1, 0.14]]) * u
        layout.canvas.polygon(pts, lip)
        layout.canvas.polyline(c + np.array([[-0.4, 0], [0, 0.02], [0.4, 0]]) * u, lip * 0.45,
                               max(1.0, 0.03 * u))
    return layout.done()


def render_hand(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A raised hand (palm and fingers), ``size`` pixels long: an occluder."""
    layout = _Layout(centre, size * 0.75, blur_sigma)
    u = size * layout.k
    skin = _colour(rng, True)
    angle = rng.uniform(-0.6, 0.6)
    up = np.array([np.sin(angle), -np.cos(angle)])
    side = np.array([-up[1], up[0]])
    palm = layout.centre + 0.1 * u * up
    layout.canvas.ellipse(palm, (0.22 * u, 0.27 * u), float(np.rad2deg(angle)), skin)
    for k, length in enumerate((0.34, 0.4, 0.38, 0.3)):
        base = palm + side * (k - 1.5) * 0.11 * u + up * 0.18 * u
        layout.canvas.polyline([base, base + up * length * u], skin, 0.095 * u)
    thumb = palm - side * 0.2 * u
    layout.canvas.polyline([thumb, thumb - side * 0.2 * u + up * 0.15 * u], skin, 0.1 * u)
    layout.canvas.polyline([palm - side * 0.2 * u - up * 0.4 * u, palm + side * 0.2 * u - up * 0.4 * u],
                           skin * 0.9, 0.4 * u)  # wrist
    return layout.done()


def render_panel(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A sign, bag or placard: a coloured quadrilateral with stripes, ``size`` pixels across."""
    layout = _Layout(centre, size * 0.75, blur_sigma)
    u = size * layout.k
    corners = np.array([[-0.5, -0.35], [0.5, -0.35], [0.5, 0.35], [-0.5, 0.35]])
    corners = corners * rng.uniform(0.6, 1.0, 2) + rng.uniform(-0.06, 0.06, (4, 2))
    fill = _colour(rng, False)
    layout.canvas.polygon(layout.centre + corners * u, fill)
    for y in np.linspace(-0.25, 0.25, rng.integers(0, 5)):
        layout.canvas.polyline(layout.centre + np.array([[-0.4, y], [0.4, y]]) * u,
                               _colour(rng, False), max(1.0, 0.05 * u))
    return layout.done()


def render_pole(rng: np.random.Generator, size: float, centre, blur_sigma: float = 0.0) -> Sprite:
    """A pole, stick or microphone crossing ``size`` pixels: a thin occluder."""
    layout = _Layout(centre, size * 0.6, blur_sigma)
    u = size * layout.k
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)]) * 0.55 * u
    colour = rng.uniform(10, 200, 3)
    layout.canvas.polyline([layout.centre - d, layout.centre + d], colour, rng.uniform(0.06, 0.15) * u)
    if rng.random() < 0.5:  # microphone head
        layout.canvas.ellipse(layout.centre - d, (0.1 * u, 0.1 * u), 0, (40, 40, 45))
    return layout.done()


DISTRACTORS = (render_blob, render_ring, render_face_part)
OCCLUDERS = (render_hand, render_panel, render_pole, render_blob)
