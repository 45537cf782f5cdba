"""Draw the body under a face (neck, shoulders, torso; arms and legs when the whole person shows).

Bodies are large and plain, so they are drawn at the picture's own resolution, apart from the head
(``data/face_render.py``), and painted before it. Coordinates are in units of the half face width
``a`` from the head centre; the body turns with a share of the head's roll.
"""
from __future__ import annotations

import numpy as np

from data.canvas import Canvas, Sprite, finish
from data.face_model import FaceParams

BODY_ROLL_SHARE = 0.3  # people tilt their heads more than their bodies
SHOULDER_Y = 0.6       # below the chin (the face reaches down to y = aspect)
HIP_Y = 6.0
FEET_Y = 13.0
HALF_WIDTH = 3.0


def render_body(p: FaceParams, face_height: float, centre_xy, image_bottom: float,
                blur_sigma: float = 0.0) -> Sprite | None:
    """The standing body (arms, legs, shoes) of the person whose face is ``face_height`` pixels
    tall, head at ``centre_xy``; drawn only down to ``image_bottom`` (image pixels). None when
    none of it is inside the picture."""
    a = face_height / (2 * p.aspect)
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    asp = p.aspect
    pad = int(np.ceil(3 * blur_sigma)) + 1
    bottom = min(asp + FEET_Y + 0.5, (image_bottom + pad - cy) / a)
    x0 = int(np.floor(cx - HALF_WIDTH * a)) - pad
    y0 = int(np.floor(cy + 0.25 * asp * a)) - pad
    x1 = int(np.ceil(cx + HALF_WIDTH * a)) + pad
    y1 = int(np.ceil(cy + bottom * a)) + pad
    if y1 <= y0:
        return None
    canvas = Canvas(y1 - y0, x1 - x0)
    r = p.roll * BODY_ROLL_SHARE
    rotation = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    origin = np.array([cx - x0, cy - y0])

    def px(points):
        return origin + (np.asarray(points, np.float64) @ rotation.T) * a

    shoulder = asp + SHOULDER_Y
    torso_end = asp + HIP_Y
    side = np.linspace(0, 1, 8)
    left = np.stack([-0.45 - 2.1 * np.sqrt(side), shoulder - 0.05 + 1.1 * side ** 1.5], 1)
    body = np.concatenate([left, [[-2.2, torso_end], [2.2, torso_end]], left[::-1] * [-1, 1]])
    if bottom > torso_end:
        trousers = p.clothes[::-1] * 0.5 + 20
        for s in (-1, 1):
            leg = [[s * 0.1, torso_end - 0.5], [s * 1.9, torso_end - 0.5], [s * 1.5, asp + FEET_Y],
                   [s * 0.4, asp + FEET_Y]]
            canvas.polygon(px(leg), trousers)
            canvas.ellipse(px([[s * 1.05, asp + FEET_Y]])[0], (0.8 * a, 0.35 * a), 0, (30, 30, 35))
    canvas.polygon(px(body), p.clothes)
    if bottom > shoulder + 1:
        for s in (-1, 1):
            arm = px([[s * 2.45, shoulder + 0.9], [s * 2.6, asp + 3.5], [s * 2.5, torso_end + 0.3]])
            canvas.polyline(arm, p.clothes * 0.82, 0.7 * a)
            canvas.ellipse(arm[-1] + np.array([0, 0.3 * a]), (0.3 * a, 0.4 * a), 0, p.skin * 0.9)
    collar = [[-0.55, shoulder - 0.05], [0, shoulder + 0.4 + 0.4 * (p.clothes[0] > 128)],
              [0.55, shoulder - 0.05]]
    canvas.polygon(px(collar), p.skin * 0.8)
    neck = [[-0.42, 0.3 * asp], [0.42, 0.3 * asp], [0.45, shoulder], [-0.45, shoulder]]
    canvas.polygon(px(neck), p.skin * 0.78)
    return finish(canvas, x0, y0, 1, blur_sigma)
