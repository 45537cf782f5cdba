"""Compose one picture of the embedded dataset: background, people, distractors, occluders.

A scene is one of four kinds, after the events of WIDER FACE: a portrait (1-3 large faces), a
group (3-10 faces in one or two rows), a crowd (rows of many small faces growing towards the
camera, heads overlapping) or a street (faces of any size scattered among more distractors). Things
are painted far to near, and an "owner" map records which face (if any) each pixel finally shows,
so every face's visible fraction (occlusion by other people, objects, masks, sunglasses and the
picture's border) is measured, not guessed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data.backgrounds import BackgroundBank
from data.body_render import render_body
from data.distractors import DISTRACTORS, OCCLUDERS
from data.face_model import sample_face_params
from data.face_render import render_back_of_head, render_person

SCENE_KINDS = ("portrait", "group", "crowd", "street")
SCENE_WEIGHTS = (0.2, 0.3, 0.2, 0.3)
MAX_PEOPLE = 60  # a crowd keeps a random subset of this many people (time per picture)
ASPECTS = ((4, 3), (3, 2), (16, 9), (1, 1), (3, 4), (2, 3))  # width : height
ASPECT_WEIGHTS = (0.35, 0.2, 0.15, 0.1, 0.12, 0.08)
MIN_FACE_HEIGHT = 7.0  # smallest face painted (pixels, box height)
BACK_OF_HEAD_SHARE = {"portrait": 0.0, "group": 0.05, "crowd": 0.15, "street": 0.15}
DISTRACTOR_COUNT = {"portrait": (0, 3), "group": (1, 4), "crowd": (1, 5), "street": (3, 10)}
OCCLUSION_PROBABILITY = 0.12  # chance that an object is drawn over a given face
BLUR_LEVELS = (0, 1, 2)  # clear, normal, heavy (WIDER's blur attribute)
BLUR_LEVEL_WEIGHTS = (0.65, 0.25, 0.1)
DARK_PROBABILITY = 0.07
CAMERA_BLUR_PROBABILITY = 0.05
NOT_A_FACE = -2  # owner-map value of pixels covered by anything else
NOBODY = -1


@dataclass
class SceneFace:
    """One painted face: box ``[4]`` (x1, y1, x2, y2) pixels, unclipped; landmarks ``[5, 2]``."""

    box: np.ndarray
    landmarks: np.ndarray
    visible: float       # fraction of the face region that shows in the final picture
    blur: int            # 0 clear, 1 normal, 2 heavy
    yaw_deg: float
    dark: bool           # the whole picture is under-exposed


@dataclass
class _Item:
    depth: float
    kind: str            # "face", "back", "distractor"
    centre: np.ndarray
    size: float


def _blur_sigma(rng: np.random.Generator, level: int, size: float) -> float:
    if level == 0:
        return 0.0
    low, high, floor = (0.02, 0.04, 0.7) if level == 1 else (0.05, 0.09, 1.5)
    return max(floor, rng.uniform(low, high) * size)


def _layout_people(rng, kind: str, width: int, height: int) -> list[tuple[np.ndarray, float]]:
    """Head centres and face heights (pixels) for one scene kind."""
    people = []
    if kind == "portrait":
        n = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        for i in range(n):
            h = rng.uniform(0.22, 0.55) * height / np.sqrt(n)
            x = (i + 0.5 + rng.uniform(-0.2, 0.2)) * width / n
            people.append((np.array([x, rng.uniform(0.3, 0.55) * height]), h))
    elif kind == "group":
        n = int(rng.integers(3, 11))
        rows = 1 if n <= 5 else 2
        base = np.exp(rng.uniform(np.log(0.06), np.log(0.2))) * height
        y = rng.uniform(0.25, 0.45) * height
        for r in range(rows):
            h = base * 0.85 ** (rows - 1 - r)
            count = n // rows + (r < n % rows)
            spacing = 0.8 * h * rng.uniform(1.0, 1.6)
            x_start = width / 2 - spacing * (count - 1) / 2
            for i in range(count):
                jitter = rng.normal(0, 0.08, 2) * h
                people.append((np.array([x_start + i * spacing, y]) + jitter, h * rng.uniform(0.9, 1.1)))
            y += base * rng.uniform(0.8, 1.2)
    elif kind == "crowd":
        # Rows from the back: each nearer row lower in the picture, with larger faces.
        h = rng.uniform(MIN_FACE_HEIGHT, 14)
        growth, spacing = rng.uniform(1.1, 1.35), rng.uniform(1.0, 1.8)
        y = rng.uniform(0.1, 0.4) * height
        while y < 0.98 * height:
            step = 0.8 * h * spacing
            for x in np.arange(rng.uniform(0, step), width, step):
                jitter = rng.normal(0, 0.12, 2) * h
                people.append((np.array([x, y]) + jitter, h * rng.uniform(0.85, 1.15)))
            y += h * rng.uniform(0.9, 1.5)
            h *= growth
    else:  # street
        for _ in range(int(rng.integers(2, 13))):
            h = np.exp(rng.uniform(np.log(8), np.log(0.35 * height)))
            centre = np.array([rng.uniform(0, width), rng.uniform(0.15, 0.85) * height])
            people.append((centre, h))
    if len(people) > MAX_PEOPLE:
        keep = np.sort(rng.choice(len(people), MAX_PEOPLE, replace=False))
        people = [people[i] for i in keep]
    return [(c, max(h, MIN_FACE_HEIGHT)) for c, h in people]


def _composite(image: np.ndarray, owner: np.ndarray, sprite, owner_id: int) -> None:
    """Paint ``sprite`` (or nothing for None) over ``image`` (float32 [H, W, 3]); update the
    owner map [H, W]."""
    if sprite is None:
        return
    h, w = sprite.alpha.shape
    x0, y0 = max(sprite.x0, 0), max(sprite.y0, 0)
    x1, y1 = min(sprite.x0 + w, image.shape[1]), min(sprite.y0 + h, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    dst = np.s_[y0:y1, x0:x1]
    src = np.s_[y0 - sprite.y0:y1 - sprite.y0, x0 - sprite.x0:x1 - sprite.x0]
    alpha = sprite.alpha[src]
    image[dst] = image[dst] * (1 - alpha[..., None]) + sprite.colour[src]
    region = owner[dst]
    region[alpha > 0.5] = NOT_A_FACE
    if owner_id >= 0:
        region[sprite.skin[src] > 0.5] = owner_id


def sample_scene_kind(rng: np.random.Generator) -> str:
    return SCENE_KINDS[rng.choice(len(SCENE_KINDS), p=SCENE_WEIGHTS)]


def render_scene(rng: np.random.Generator, long_side: int, bank: BackgroundBank, kind: str,
                 distractor_scale: float = 1.0) -> tuple[np.ndarray, list[SceneFace]]:
    """One picture of ``kind`` (one of ``SCENE_KINDS``), uint8 BGR ``[H, W, 3]`` with
    ``max(H, W) == long_side``, and its faces. ``distractor_scale`` multiplies the number of
    distractors (0: none; 1: ``DISTRACTOR_COUNT``)."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"scene kind must be one of {SCENE_KINDS}, got {kind!r}")
    aw, ah = ASPECTS[rng.choice(len(ASPECTS), p=ASPECT_WEIGHTS)]
    width, height = (long_side, round(long_side * ah / aw)) if aw >= ah else \
        (round(long_side * aw / ah), long_side)
    image = bank.sample(rng, width, height)
    if kind == "portrait" and rng.random() < 0.4:  # shallow depth of field
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(2, 6))
    people = _layout_people(rng, kind, width, height)
    items = [_Item(h * rng.uniform(0.95, 1.05),
                   "back" if rng.random() < BACK_OF_HEAD_SHARE[kind] else "face", c, h)
             for c, h in people]
    sizes = [h for _, h in people] or [height * 0.1]
    low, high = DISTRACTOR_COUNT[kind]
    for _ in range(int(round(rng.integers(low, high + 1) * distractor_scale))):
        size = float(rng.choice(sizes)) * rng.uniform(0.7, 1.4)
        centre = np.array([rng.uniform(0, width), rng.uniform(0.1, 0.95) * height])
        items.append(_Item(size * rng.uniform(0.9, 1.1), "distractor", centre, size))
    items.sort(key=lambda item: item.depth)

    owner = np.full((height, width), NOBODY, np.int32)
    faces, areas = [], []
    for item in items:
        blur_level = int(rng.choice(BLUR_LEVELS, p=BLUR_LEVEL_WEIGHTS))
        sigma = _blur_sigma(rng, blur_level, item.size)
        if item.kind == "distractor":
            draw = DISTRACTORS[rng.integers(len(DISTRACTORS))]
            _composite(image, owner, draw(rng, item.size, item.centre, sigma), NOBODY)
            continue
        params = sample_face_params(rng)
        body = render_body(params, item.size, item.centre, height, sigma)
        _composite(image, owner, body, NOBODY)
        if item.kind == "back":
            _composite(image, owner, render_back_of_head(params, item.size, item.centre, sigma), NOBODY)
            continue
        person = render_person(params, item.size, item.centre, sigma)
        _composite(image, owner, person.sprite, len(faces))
        faces.append(SceneFace(person.box, person.landmarks, 0.0, blur_level,
                               float(np.rad2deg(params.yaw)), False))
        areas.append(person.face_area)
        if item.size >= 12 and rng.random() < OCCLUSION_PROBABILITY:
            occluder = OCCLUDERS[rng.integers(len(OCCLUDERS))]
            where = item.centre + rng.uniform(-0.6, 0.6, 2) * item.size
            _composite(image, owner, occluder(rng, item.size * rng.uniform(0.6, 1.4), where), NOBODY)

    dark = rng.random() < DARK_PROBABILITY
    if dark:
        image *= rng.uniform(0.3, 0.55)
    if rng.random() < CAMERA_BLUR_PROBABILITY:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.0, 2.0))
        for face in faces:
            face.blur = min(face.blur + 1, BLUR_LEVELS[-1])
    image += bank.noise(rng, width, height) * np.float32(rng.uniform(0.5, 4))
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(faces))
    for face, count, area in zip(faces, counts, areas):
        face.visible = float(min(1.0, count / max(area, 1.0)))
        face.dark = dark
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), faces
