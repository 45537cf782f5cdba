"""A parametric face for the embedded dataset: appearance parameters and 3-D geometry.

The head is an ellipsoid (half-width ``a = 1``, half-height ``b``, depth ``c``); eyes, nose tip and
mouth corners sit on (or, for the nose, in front of) its surface. Yaw and pitch rotate it, roll
turns the image plane, and an orthographic projection gives the 2-D points that are drawn
(``data/face_render.py``) and, for the five landmarks, annotated. So yaw moves the nose tip more
than the eyes and foreshortens the far side, as on a real face.

Coordinates are in units of ``a``, image axes (x right, y down), origin at the head centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Skin tones (BGR), dark to light, after the Fitzpatrick-like spread of real photographs.
SKIN_TONES = ((45, 62, 96), (60, 85, 130), (78, 110, 160), (95, 135, 190), (120, 160, 215),
              (140, 180, 230), (160, 195, 240), (185, 210, 245))
HAIR_COLOURS = ((20, 20, 25), (25, 35, 60), (35, 55, 95), (60, 95, 150), (70, 130, 190),
                (40, 60, 140), (150, 150, 155), (215, 215, 220))
EYE_COLOURS = ((40, 50, 70), (30, 60, 100), (120, 90, 50), (90, 120, 60), (60, 60, 60))
HAIR_STYLES = ("bald", "short", "short", "bangs", "long", "long", "bun", "curly")
GLASSES = (None, None, None, None, None, None, "clear", "sun")
BEARDS = (None,) * 9 + ("stubble", "full", "moustache")
OUTLINE_POINTS = 48
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass
class FaceParams:
    """Everything that makes one face: appearance, proportions (units of ``a``) and pose (radians)."""

    skin: np.ndarray            # BGR float [3]
    hair: np.ndarray            # BGR float [3]
    eye_colour: np.ndarray      # BGR float [3]
    lip: np.ndarray             # BGR float [3]
    clothes: np.ndarray         # BGR float [3]
    hair_style: str
    glasses: str | None
    beard: str | None
    mask: bool                  # a surgical mask over mouth and nose
    hat: np.ndarray | None      # BGR colour of a cap, or None
    aspect: float               # b / a: face height over width
    depth: float                # c / a
    jaw: float                  # how much the lower face narrows towards the chin
    eye_dx: float
    eye_y: float
    eye_size: float
    brow_gap: float
    nose_y: float
    nose_len: float
    mouth_y: float
    mouth_dx: float
    smile: float
    mouth_open: float
    eyes_closed: bool
    yaw: float
    pitch: float
    roll: float
    light_angle: float          # direction the light comes from, in the image plane
    light_strength: float       # 0 = flat, 0.5 = strong side light


def _jitter_colour(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float64) * rng.uniform(1 - spread, 1 + spread, 3), 0, 255)


def sample_face_params(rng: np.random.Generator, max_yaw_deg: float = 75.0) -> FaceParams:
    """Draw one face's parameters."""
    skin = _jitter_colour(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 0.08)
    hair = _jitter_colour(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.12)
    lip = np.clip(skin * np.array([0.75, 0.7, 1.0]) * rng.uniform(0.8, 0.95), 0, 255)
    yaw = np.deg2rad(np.clip(rng.normal(0, 28), -max_yaw_deg, max_yaw_deg))
    return FaceParams(
        skin=skin, hair=hair, lip=lip,
        eye_colour=_jitter_colour(rng, EYE_COLOURS[rng.integers(len(EYE_COLOURS))], 0.15),
        clothes=rng.uniform(20, 235, 3),
        hair_style=str(HAIR_STYLES[rng.integers(len(HAIR_STYLES))]),
        glasses=GLASSES[rng.integers(len(GLASSES))],
        beard=BEARDS[rng.integers(len(BEARDS))],
        mask=bool(rng.random() < 0.05),
        hat=rng.uniform(20, 235, 3) if rng.random() < 0.1 else None,
        aspect=rng.uniform(1.18, 1.42), depth=rng.uniform(1.0, 1.15), jaw=rng.uniform(0.1, 0.35),
        eye_dx=rng.uniform(0.37, 0.44), eye_y=rng.uniform(-0.30, -0.20),
        eye_size=rng.uniform(0.15, 0.2), brow_gap=rng.uniform(0.13, 0.2),
        nose_y=rng.uniform(0.1, 0.2), nose_len=rng.uniform(0.25, 0.4),
        mouth_y=rng.uniform(0.47, 0.58), mouth_dx=rng.uniform(0.25, 0.34),
        smile=rng.uniform(-0.05, 0.25), mouth_open=max(0.0, rng.uniform(-0.1, 0.12)),
        eyes_closed=bool(rng.random() < 0.04),
        yaw=float(yaw), pitch=float(np.deg2rad(rng.normal(0, 8))),
        roll=float(np.deg2rad(np.clip(rng.normal(0, 12), -40, 40))),
        light_angle=float(rng.uniform(0, 2 * np.pi)), light_strength=float(rng.uniform(0, 0.45)),
    )


class FaceGeometry:
    """Project points of one face (``FaceParams``) to the image plane, in units of ``a``."""

    def __init__(self, p: FaceParams):
        self.p = p
        cy, sy = np.cos(p.yaw), np.sin(p.yaw)
        cx, sx = np.cos(p.pitch), np.sin(p.pitch)
        cr, sr = np.cos(p.roll), np.sin(p.roll)
        yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        pitch = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        self.rotation = roll @ pitch @ yaw  # [3, 3]
        self.roll_2d = roll[:2, :2]

    def surface(self, x, y, lift: float = 0.0) -> np.ndarray:
        """3-D points ``[N, 3]`` on the front of the head at ``(x, y)``, ``lift`` in front of it."""
        p = self.p
        x, y = np.atleast_1d(np.asarray(x, np.float64)), np.atleast_1d(np.asarray(y, np.float64))
        inside = np.clip(1 - x ** 2 - (y / p.aspect) ** 2, 0, 1)
        z = p.depth * np.sqrt(inside) + lift
        return np.stack([x, y, z], axis=1)

    def project(self, points3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[N, 3]`` model points -> (``[N, 2]`` image-plane points, ``[N]`` depth towards the viewer)."""
        rotated = points3d @ self.rotation.T  # [N, 3]
        return rotated[:, :2], rotated[:, 2]

    def facing(self, points3d: np.ndarray) -> np.ndarray:
        """``[N]`` cosine between the surface normal and the view: 1 facing us, <= 0 turned away."""
        p = self.p
        normals = points3d / np.array([1.0, p.aspect ** 2, p.depth ** 2])  # ellipsoid gradient
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return (normals @ self.rotation.T)[:, 2]

    def outline(self) -> np.ndarray:
        """``[OUTLINE_POINTS, 2]`` silhouette of the face (jaw narrowing towards the chin)."""
        p = self.p
        t = np.linspace(0, 2 * np.pi, OUTLINE_POINTS, endpoint=False)
        x, y = np.cos(t), p.aspect * np.sin(t)
        lower = np.clip(y / p.aspect, 0, 1)
        x = x * (1 - p.jaw * lower ** 2)
        # The silhouette of the turned ellipsoid: wider by the depth showing at the side.
        width = np.hypot(np.cos(p.yaw), p.depth * np.sin(p.yaw))
        height = np.hypot(np.cos(p.pitch), p.depth / p.aspect * np.sin(p.pitch))
        shift = -0.15 * np.sin(p.yaw)  # the back of the skull shows on the far side
        points = np.stack([x * width + shift, y * height], axis=1)
        return points @ self.roll_2d.T

    def landmarks_3d(self) -> np.ndarray:
        """``[5, 3]`` left eye, right eye, nose tip, left and right mouth corner (image-left first)."""
        p = self.p
        eyes = self.surface([-p.eye_dx, p.eye_dx], [p.eye_y, p.eye_y], lift=-0.04)
        nose = self.surface([0.0], [p.nose_y], lift=p.nose_len)
        mouth_y = p.mouth_y - 0.05 * p.smile
        mouth = self.surface([-p.mouth_dx, p.mouth_dx], [mouth_y, mouth_y], lift=-0.02)
        return np.concatenate([eyes, nose, mouth])

    def landmarks(self) -> np.ndarray:
        """``[5, 2]`` projected landmarks in the order of ``LANDMARK_NAMES``."""
        return self.project(self.landmarks_3d())[0]
