"""Draw one head (face, ears, hair, hat, glasses, mask) as a sprite, or a head seen from behind.

The face geometry comes from ``data/face_model.py``; this file only paints it (the body under the
head is ``data/body_render.py``). Small faces are drawn at up to ``MAX_SUPERSAMPLE`` times their
size and reduced with area averaging, so a 10-pixel face is a faithful, soft little face rather
than aliased strokes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data.canvas import Canvas, Sprite, finish
from data.face_model import OUTLINE_POINTS, FaceGeometry, FaceParams

MAX_SUPERSAMPLE = 4
SUPERSAMPLE_TARGET = 48  # faces smaller than this (box height, px) are drawn larger, then reduced
DETAIL_MIN_HEIGHT = 16  # faces smaller than this (pixels) get no pupils, nostrils or teeth
SPRITE_HALF_WIDTH = 3.0  # sprite extent around the head centre, in units of the half face width a
SPRITE_TOP = 2.2
SPRITE_BELOW_CHIN = 0.9  # long hair reaches a little below the chin
DARK_LINE = (35, 30, 40)
SCLERA = (226, 230, 236)
NO_SKIN = 0
SKIN = 255


@dataclass
class RenderedPerson:
    """A person's sprite (``sprite.skin`` = where the face's own skin shows) and its annotation.

    landmarks ``[5, 2]`` and box ``[4]`` (x1, y1, x2, y2) in image pixels; face_area: the face
    region's area in pixels (what full visibility would show).
    """

    sprite: Sprite
    landmarks: np.ndarray
    box: np.ndarray
    face_area: float


class _Painter:
    """Maps model units (``a`` = 1, head centre = 0) to canvas pixels and paints the parts."""

    def __init__(self, p: FaceParams, canvas: Canvas, centre: np.ndarray, unit: float):
        self.p, self.canvas, self.centre, self.unit = p, canvas, centre, unit
        self.geo = FaceGeometry(p)
        self.outline = self.geo.outline()  # [OUTLINE_POINTS, 2]
        self.roll_deg = float(np.rad2deg(p.roll))
        self.detail = True  # small faces skip strokes too fine to show (pupils, nostrils, teeth)

    def px(self, points_2d) -> np.ndarray:
        return self.centre + np.asarray(points_2d, np.float64) * self.unit

    def on_face(self, x, y, lift=0.0) -> np.ndarray:
        """Canvas pixels ``[N, 2]`` of points on the face surface."""
        return self.px(self.geo.project(self.geo.surface(x, y, lift))[0])

    def body_px(self, points, roll_share: float) -> np.ndarray:
        """Body parts turn with only part of the head's roll."""
        r = self.p.roll * roll_share
        rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
        return self.px(np.asarray(points, np.float64) @ rot.T)

    def upper_outline(self, scale: float) -> np.ndarray:
        """Upper half of the outline (left ear level, over the top, to the right), scaled."""
        half = OUTLINE_POINTS // 2
        pts = np.concatenate([self.outline[half:], self.outline[:1]])
        return self.px(pts * scale)

    def hair_back(self) -> None:
        p = self.p
        if p.hair_style not in ("long", "curly", "bun"):
            return
        cap = self.upper_outline(1.12)
        if p.hair_style == "long":
            low = [[1.15, p.aspect + 0.7], [-1.15, p.aspect + 0.7]]
            cap = np.concatenate([cap, self.body_px(low, 0.8)])
        self.canvas.polygon(cap, p.hair)
        if p.hair_style == "curly":
            for point in self.upper_outline(1.12)[::2]:
                self.canvas.ellipse(point, (0.22 * self.unit,) * 2, 0, p.hair)
        if p.hair_style == "bun":
            top = self.px(self.geo.project(np.array([[0, -1.15 * p.aspect, 0]]))[0][0])
            self.canvas.ellipse(top, (0.42 * self.unit,) * 2, 0, p.hair)

    def ears(self, near: bool) -> None:
        p = self.p
        y = 0.5 * (p.eye_y + p.nose_y)
        pts, depth = self.geo.project(np.array([[-0.97, y, 0.0], [0.97, y, 0.0]]))
        for point, z in zip(pts, depth):
            if (z > 0.3) != near:
                continue
            axes = (0.16 * self.unit, 0.3 * self.unit)
            self.canvas.ellipse(self.px(point), axes, self.roll_deg, p.skin * 0.88)
            if self.detail:
                self.canvas.ellipse(self.px(point), (axes[0] * 0.5, axes[1] * 0.6), self.roll_deg,
                                    p.skin * 0.7)

    def face(self) -> None:
        self.canvas.polygon(self.px(self.outline), self.p.skin, skin=SKIN)

    def brows(self) -> None:
        p = self.p
        t = np.linspace(-1, 1, 7)
        for side in (-1, 1):
            facing = self.geo.facing(self.geo.surface([side * p.eye_dx], [p.eye_y]))[0]
            if facing < 0.1:
                continue
            x = side * (p.eye_dx + 0.19 * t)
            y = p.eye_y - p.brow_gap - 0.05 * (1 - t ** 2) + 0.02 * side * t
            self.canvas.polyline(self.on_face(x, y, 0.01), p.hair * 0.7, 0.075 * self.unit)

    def eyes(self) -> None:
        p, u = self.p, self.unit
        points3d = self.geo.surface([-p.eye_dx, p.eye_dx], [p.eye_y] * 2, lift=-0.04)
        facing = self.geo.facing(points3d)
        for centre, f in zip(self.px(self.geo.project(points3d)[0]), facing):
            if f < 0.12:
                continue
            half = (p.eye_size * f * u, p.eye_size * 0.5 * u)
            if p.eyes_closed:
                self.canvas.ellipse(centre, half, self.roll_deg, DARK_LINE, thickness=0.04 * u,
                                    arc=(10, 170))
                continue
            self.canvas.ellipse(centre, half, self.roll_deg, SCLERA)
            self.canvas.ellipse(centre, (0.095 * f * u, 0.095 * u), self.roll_deg, p.eye_colour)
            if self.detail:
                self.canvas.ellipse(centre, (0.045 * f * u, 0.045 * u), self.roll_deg, (15, 15, 20))
                self.canvas.ellipse(centre, half, self.roll_deg, DARK_LINE, thickness=0.05 * u,
                                    arc=(180, 360))

    def nose(self) -> None:
        p, u = self.p, self.unit
        t = np.linspace(0, 1, 6)
        side = -0.09 if np.sin(p.light_angle) < 0 else 0.09
        ridge = self.on_face(side * np.ones_like(t), p.eye_y + 0.1 + t * (p.nose_y - p.eye_y - 0.1),
                             lift=t ** 2 * p.nose_len * 0.85)
        self.canvas.polyline(ridge, p.skin * 0.72, 0.05 * u)
        if not self.detail:
            return
        wing_x = np.array([-0.17, -0.1, 0.0, 0.1, 0.17])
        wing = self.on_face(wing_x, p.nose_y + np.array([0.0, 0.07, 0.09, 0.07, 0.0]),
                            lift=np.array([0.12, 0.3, 0.75, 0.3, 0.12]) * p.nose_len)
        self.canvas.polyline(wing, p.skin * 0.66, 0.04 * u)
        for x in (-0.085, 0.085):
            hole = self.on_face([x], [p.nose_y + 0.065], lift=0.4 * p.nose_len)[0]
            self.canvas.ellipse(hole, (0.045 * u, 0.025 * u), self.roll_deg, p.skin * 0.4)

    def mouth(self) -> None:
        p, u = self.p, self.unit
        y0 = p.mouth_y - 0.05 * p.smile  # corners, as the landmarks
        dx = p.mouth_dx
        mid = p.mouth_y + 0.02 + 0.05 * p.smile
        upper_x = np.array([-dx, -0.6 * dx, -0.15 * dx, 0, 0.15 * dx, 0.6 * dx, dx])
        upper_y = np.array([y0, mid - 0.08, mid - 0.09, mid - 0.07, mid - 0.09, mid - 0.08, y0])
        lower_x = np.array([dx, 0.5 * dx, 0, -0.5 * dx])
        lower_y = mid + p.mouth_open + np.array([y0 - mid - p.mouth_open, 0.09, 0.12, 0.09])
        lips = self.on_face(np.concatenate([upper_x, lower_x]), np.concatenate([upper_y, lower_y]))
        self.canvas.polygon(lips, p.lip)
        line_x = np.array([-dx, -0.5 * dx, 0, 0.5 * dx, dx])
        line_y = np.array([y0, mid - 0.01, mid, mid - 0.01, y0])
        if p.mouth_open > 0.02:
            inner_y = np.concatenate([line_y, (line_y + np.array([0, 1, 1, 1, 0]) * p.mouth_open)[::-1]])
            inner = self.on_face(np.concatenate([line_x, line_x[::-1]]), inner_y)
            self.canvas.polygon(inner, (45, 35, 60))
            if self.detail:
                teeth = self.on_face(line_x[1:4], line_y[1:4] + 0.35 * p.mouth_open)
                self.canvas.polyline(teeth, (215, 225, 230), 0.4 * p.mouth_open * u)
        self.canvas.polyline(self.on_face(line_x, line_y), p.lip * 0.45, 0.03 * u)

    def beard(self) -> None:
        p = self.p
        if p.beard is None:
            return
        if p.beard == "moustache":
            x = np.array([-p.mouth_dx, 0, p.mouth_dx, 0])
            y = p.mouth_y + np.array([-0.04, -0.13, -0.04, -0.07])
            self.canvas.polygon(self.on_face(x, y, 0.02), p.hair * 0.8)
            return
        n = OUTLINE_POINTS
        chin = self.px(self.outline[n // 16: n // 2 - n // 16 + 1])  # lower outline, right to left
        x = np.linspace(-0.8, 0.8, 7)
        top = self.on_face(x, p.nose_y + 0.15 + 0.1 * np.abs(x))
        opacity = 0.3 if p.beard == "stubble" else 0.9
        self.canvas.polygon(np.concatenate([chin, top]), p.hair * 0.8, opacity=opacity)

    def hair_front(self) -> None:
        p = self.p
        if p.hair_style == "bald" and p.hat is None:
            return
        line = -0.38 if p.hair_style == "bangs" else -0.62
        x = np.linspace(0.97, -0.97, 11)
        y = p.aspect * (line + 0.06 * np.abs(x) ** 2) + (0.04 * np.sin(9 * x) if p.hair_style ==
                                                          "bangs" else 0)
        hairline = self.on_face(x, y, 0.03)
        colour = p.hair if p.hat is None else p.hat
        scale = 1.05 if p.hat is None else 1.12
        # Hair is not occlusion (WIDER boxes include the hairline): the skin mask stays.
        self.canvas.polygon(np.concatenate([self.upper_outline(scale), hairline]), colour)
        if p.hat is not None:
            band = self.on_face(x, np.full_like(x, p.aspect * (line + 0.05)), 0.06)
            self.canvas.polyline(band, p.hat * 0.6, 0.12 * self.unit)

    def glasses(self) -> None:
        p, u = self.p, self.unit
        if p.glasses is None:
            return
        points3d = self.geo.surface([-p.eye_dx, p.eye_dx], [p.eye_y] * 2, lift=0.06)
        facing = np.clip(self.geo.facing(points3d), 0.15, 1)
        centres = self.px(self.geo.project(points3d)[0])
        for centre, f in zip(centres, facing):
            axes = (p.eye_size * 1.55 * f * u, p.eye_size * 1.25 * u)
            if p.glasses == "sun":
                self.canvas.ellipse(centre, axes, self.roll_deg, (25, 25, 30), skin=NO_SKIN,
                                    opacity=0.92)
            self.canvas.ellipse(centre, axes, self.roll_deg, (30, 30, 35), thickness=0.05 * u)
        inner = p.eye_dx - p.eye_size * 1.55
        self.canvas.polyline(self.on_face([-inner, 0, inner], [p.eye_y, p.eye_y - 0.04, p.eye_y],
                                          0.08), (30, 30, 35), 0.05 * u)

    def mask(self) -> None:
        p = self.p
        if not p.mask:
            return
        n = OUTLINE_POINTS
        chin = self.px(self.outline[n // 32: n // 2 - n // 32 + 1])
        x = np.linspace(-0.9, 0.9, 9)
        top = self.on_face(x, p.nose_y - 0.12 + 0.08 * np.abs(x), lift=0.1 + 0.2 * (1 - np.abs(x)))
        colour = (228, 205, 170) if p.clothes[1] > 128 else (235, 235, 235)
        self.canvas.polygon(np.concatenate([chin, top]), colour, skin=NO_SKIN)


def light(sprite: Sprite, p: FaceParams, centre: np.ndarray, a: float) -> None:
    """Side light over the sprite and, on the face, shade towards the outline (volume)."""
    h, w = sprite.alpha.shape
    xs = (np.arange(w, dtype=np.float32) + sprite.x0 - np.float32(centre[0])) / np.float32(a)
    ys = (np.arange(h, dtype=np.float32) + sprite.y0 - np.float32(centre[1])) / np.float32(a)
    along = xs[None, :] * np.cos(p.light_angle) + ys[:, None] * np.sin(p.light_angle)
    rim = np.clip(xs[None, :] ** 2 + (ys[:, None] / p.aspect) ** 2 - 0.45, 0, 1) * sprite.skin
    factor = np.clip(1 + (p.light_strength / p.aspect) * along - 0.35 * rim, 0.4, 1.5)
    sprite.colour *= factor[..., None]


def _layout(p: FaceParams, face_height: float, centre_xy, blur_sigma: float):
    """Sprite window, supersampling and painter for a head of ``face_height`` pixels."""
    a = face_height / (2 * p.aspect)  # pixels per model unit
    k = int(np.clip(np.ceil(SUPERSAMPLE_TARGET / face_height), 1, MAX_SUPERSAMPLE))
    pad = int(np.ceil(3 * blur_sigma)) + 1
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    x0 = int(np.floor(cx - SPRITE_HALF_WIDTH * a)) - pad
    y0 = int(np.floor(cy - SPRITE_TOP * p.aspect * a)) - pad
    x1 = int(np.ceil(cx + SPRITE_HALF_WIDTH * a)) + pad
    y1 = int(np.ceil(cy + (p.aspect + SPRITE_BELOW_CHIN) * a)) + pad
    canvas = Canvas((y1 - y0) * k, (x1 - x0) * k)
    centre = (np.array([cx - x0, cy - y0]) + 0.5) * k - 0.5  # image -> supersampled canvas pixels
    painter = _Painter(p, canvas, centre, a * k)
    painter.detail = face_height >= DETAIL_MIN_HEIGHT
    return painter, x0, y0, k, a


def render_person(p: FaceParams, face_height: float, centre_xy, blur_sigma: float = 0.0) -> RenderedPerson:
    """Paint a person whose face box is ``face_height`` pixels tall, head centred at ``centre_xy``.

    ``centre_xy`` is in image pixels (OpenCV convention: integer = pixel centre); ``blur_sigma``
    (pixels) blurs the whole sprite, edges included.
    """
    painter, x0, y0, k, a = _layout(p, face_height, centre_xy, blur_sigma)
    for part in (painter.hair_back, lambda: painter.ears(False), painter.face,
                 lambda: painter.ears(True), painter.beard, painter.brows, painter.eyes,
                 painter.nose, painter.mouth, painter.hair_front, painter.glasses, painter.mask):
        part()
    sprite = finish(painter.canvas, x0, y0, k, blur_sigma)
    centre = np.asarray(centre_xy, np.float64)
    light(sprite, p, centre, a)
    outline = centre + painter.outline * a
    landmarks = centre + painter.geo.landmarks() * a
    box = np.concatenate([outline.min(0), outline.max(0)])
    return RenderedPerson(sprite, landmarks, box, float(cv2.contourArea(outline.astype(np.float32))))


def render_back_of_head(p: FaceParams, face_height: float, centre_xy,
                        blur_sigma: float = 0.0) -> Sprite:
    """A person seen from behind: head, ears, neck and shoulders, no face (a distractor)."""
    painter, x0, y0, k, a = _layout(p, face_height, centre_xy, blur_sigma)
    painter.ears(False)
    painter.ears(True)
    head = painter.px(painter.outline * 1.03)
    painter.canvas.polygon(head, p.skin if p.hair_style == "bald" else p.hair)
    sprite = finish(painter.canvas, x0, y0, k, blur_sigma)
    light(sprite, p, np.asarray(centre_xy, np.float64), a)
    return sprite
