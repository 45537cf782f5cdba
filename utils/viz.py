"""Plots the homework asks for: loss curves, WIDER PR curves, and images with detections.

Every function draws into a matplotlib figure it returns (and saves it when given ``path``), so a
notebook shows it inline and a headless job writes a file.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

LOSS_EVERY = 20  # the homework plots each loss averaged over blocks of 20 iterations
# Columns of the training log that are bookkeeping, not loss parts.
LOG_BOOKKEEPING = ("iteration", "epoch", "lr", "images_per_s")
BOX_COLOR = (0, 255, 0)        # BGR green, as the homework draws faces
LANDMARK_COLOR = (0, 0, 255)   # BGR red
LANDMARK_DOTS_PER_WIDTH = 30   # a landmark dot's radius is the face width / 30
SUBSET_COLORS = {"easy": "tab:green", "medium": "tab:orange", "hard": "tab:red"}


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def read_loss_log(csv_path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a training CSV log (one row per iteration) as float arrays, keyed by header."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path}: the training log has no rows yet")
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def block_means(values: np.ndarray, every: int = LOSS_EVERY) -> np.ndarray:
    """Mean of each consecutive block of ``every`` values (the last block may be shorter)."""
    values = np.asarray(values, dtype=np.float64)
    starts = np.arange(0, len(values), every)
    return np.add.reduceat(values, starts) / np.diff(np.append(starts, len(values)))


def plot_loss_curves(log: dict[str, np.ndarray] | str | Path, every: int = LOSS_EVERY,
                     path: str | Path | None = None, title: str = "Training losses") -> plt.Figure:
    """One panel per loss part, each averaged over blocks of ``every`` iterations.

    log: a CSV path written by ``utils.training.train`` or the dict ``read_loss_log`` returns; every
    column that is not bookkeeping (iteration, epoch, lr, images_per_s) is drawn as a loss part.
    """
    if not isinstance(log, dict):
        log = read_loss_log(log)
    parts = [k for k in log if k not in LOG_BOOKKEEPING]
    if not parts:
        raise ValueError(f"no loss columns in the log; columns are {list(log)}")
    its = log.get("iteration", np.arange(1, len(log[parts[0]]) + 1))
    x = block_means(its, every)
    fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts), 3.0), squeeze=False)
    for ax, part in zip(axes[0], parts):
        ax.plot(x, block_means(log[part], every), marker=".", lw=1)
        ax.set_title(part)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} (mean of every {every} iterations)")
    fig.tight_layout()
    return _save(fig, path)


def plot_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]],
                   aps: dict[str, float] | None = None, path: str | Path | None = None,
                   title: str = "WIDER FACE precision-recall") -> plt.Figure:
    """Precision against recall per setting.

    curves: ``{'easy': (precision [T], recall [T]), ...}`` as ``utils.evaluate`` returns them.
    aps: optional AP per setting, shown in the legend.
    """
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for subset, (precision, recall) in curves.items():
        label = subset if aps is None else f"{subset}: AP {aps[subset]:.3f}"
        ax.plot(recall, precision, label=label, color=SUBSET_COLORS.get(subset))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def draw_detections(image_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None,
                    scores: np.ndarray | None = None, thickness: int = 2) -> np.ndarray:
    """A copy of ``image_bgr`` (uint8 [H, W, 3]) with faces drawn on it.

    boxes: [N, 4] (x1, y1, x2, y2) pixels, green; landmarks: [N, 10] (l0x, l0y, ..., l4x, l4y)
    pixels, red dots (a row of -1 means absent and is skipped); scores: [N], written above boxes.
    """
    out = np.ascontiguousarray(image_bgr).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        radius = max(thickness, round((x2 - x1) / LANDMARK_DOTS_PER_WIDTH))  # visible on large faces
        cv2.rectangle(out, (round(x1), round(y1)), (round(x2), round(y2)), BOX_COLOR, thickness)
        if scores is not None:
            cv2.putText(out, f"{float(scores[i]):.2f}", (round(x1), max(0, round(y1) - 3)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        if landmarks is not None:
            points = np.asarray(landmarks[i], dtype=np.float64).reshape(5, 2)
            if (points < 0).all():
                continue
            for x, y in points:
                cv2.circle(out, (round(x), round(y)), radius, LANDMARK_COLOR, -1)
    return out


def show_images(images_bgr: list[np.ndarray], titles: list[str] | None = None, cols: int = 2,
                path: str | Path | None = None) -> plt.Figure:
    """Grid of BGR images (converted to RGB for matplotlib)."""
    rows = max(1, -(-len(images_bgr) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images_bgr):
            ax.imshow(cv2.cvtColor(images_bgr[k], cv2.COLOR_BGR2RGB))
            if titles is not None:
                ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
