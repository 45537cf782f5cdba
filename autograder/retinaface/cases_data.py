"""Graded units of the RetinaFace homework, Parts 1 and 3 (``1_data.ipynb``): dataset statistics
and the WIDER FACE dataset class. Inputs are seeded; the dataset cases write a tiny dataset (lossless
PNG images and a label.txt) into the case's folder."""
from __future__ import annotations

from pathlib import Path

import torch

from autograder.units import Case, Unit

DATA_NB = "1_data.ipynb"


def random_annotations(seed: int, n_images: int, max_faces: int = 6, size: float = 400.0,
                       outside: bool = False) -> list[torch.Tensor]:
    """Per image a [n, 15] float32 target (pixels): boxes, landmarks inside them or -1, flags.
    With ``outside`` some boxes reach past the (size x size) image borders."""
    g = torch.Generator().manual_seed(seed)
    annotations = []
    for _ in range(n_images):
        n = int(torch.randint(0, max_faces + 1, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * (size - 60)
        wh = 4 + torch.rand(n, 2, generator=g) * 56
        if outside:
            xy = xy - 40 + torch.rand(n, 2, generator=g) * 120
        boxes = torch.cat([xy, xy + wh], dim=1)
        points = xy.repeat(1, 5) + torch.rand(n, 10, generator=g) * wh.repeat(1, 5)
        flag = torch.where(torch.rand(n, generator=g) < 0.8, 1.0, -1.0)
        points = torch.where(flag[:, None] > 0, points, torch.full_like(points, -1.0))
        annotations.append(torch.cat([boxes, points, flag[:, None]], dim=1))
    return annotations


def _annotations(annotations: list, sizes: torch.Tensor | None = None, bins: int | None = None) -> dict:
    out = {"annotations": annotations}
    if sizes is not None:
        out["image_sizes"] = sizes
    if bins is not None:
        out["bins"] = bins
    return out


def _sizes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([300 + torch.rand(n, generator=g) * 200, 300 + torch.rand(n, generator=g) * 200], 1)


def _edge_heatmap_case(_dir: Path) -> dict:
    """Centres exactly at 0 and 1 (first and last bins) and centres outside the image."""
    boxes = torch.tensor([[-10.0, -10.0, 10.0, 10.0], [90.0, 190.0, 110.0, 210.0],
                          [-30.0, 50.0, -10.0, 70.0], [40.0, 60.0, 60.0, 80.0]])
    target = torch.cat([boxes, torch.full((4, 10), -1.0), torch.full((4, 1), -1.0)], dim=1)
    return _annotations([target], torch.tensor([[100.0, 200.0]]), 4)


STATS_CASES = (
    Case("12 images of up to 6 faces", lambda d: _annotations(random_annotations(30, 12))),
    Case("40 images of up to 20 faces", lambda d: _annotations(random_annotations(31, 40, 20)), public=False),
    Case("no faces at all", lambda d: _annotations([torch.zeros(0, 15), torch.zeros(0, 15)])),
)
HEATMAP_CASES = (
    Case("12 images, 8 bins", lambda d: _annotations(random_annotations(32, 12), _sizes(12, 1), 8)),
    Case("40 images with boxes outside, 16 bins",
         lambda d: _annotations(random_annotations(33, 40, 10, outside=True), _sizes(40, 2), 16), public=False),
    Case("centres on the border and outside, 4 bins", _edge_heatmap_case),
)
OUT_OF_RANGE_CASES = (
    Case("20 images, some boxes outside", lambda d: _annotations(
        random_annotations(34, 20, 8, outside=True), torch.full((20, 2), 400.0))),
    Case("all boxes inside", lambda d: _annotations(random_annotations(35, 10), torch.full((10, 2), 400.0))),
    Case("no faces", lambda d: _annotations([torch.zeros(0, 15)], torch.tensor([[100.0, 100.0]]))),
)
OVERLAP_CASES = (
    Case("30 crowded images", lambda d: _annotations(random_annotations(36, 30, 12, size=150.0))),
    Case("touching but not overlapping faces", lambda d: _annotations([torch.cat([
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [5.0, 5.0, 15.0, 15.0]]),
        torch.full((3, 11), -1.0)], dim=1), torch.zeros(0, 15)])),
    Case("no faces", lambda d: _annotations([torch.zeros(0, 15)])),
)

DATASET_IMAGES = {  # relative path -> (height, width)
    "0--Parade/0_Parade_a.png": (24, 32), "0--Parade/0_Parade_b.png": (16, 20),
    "1--Group/1_Group_c.png": (30, 18), "1--Group/1_Group_d.png": (12, 12),
}
DATASET_LABELS = """# 0--Parade/0_Parade_a.png
3 4 10 12 5.5 7.0 0.0 9.5 7.2 0.0 7.4 9.9 0.0 5.9 12.1 0.0 9.1 12.3 0.0 0.92
14 2 6.5 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 0--Parade/0_Parade_b.png
1 1 5 6
# 1--Group/1_Group_c.png
# 1--Group/1_Group_d.png
0.5 0.25 4 4 1.0 1.5 0.0 3.0 1.5 0.0 2.0 2.5 0.0 1.2 3.4 0.0 2.8 3.5 0.0 0.5
"""


def _dataset_case(workdir: Path, preproc=None) -> dict:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for rel, (h, w) in DATASET_IMAGES.items():
        path = workdir / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # lossless PNG
    (workdir / "label.txt").write_text(DATASET_LABELS)
    return {"root": str(workdir), "txt_path": str(workdir / "label.txt"), "preproc": preproc}


def _flip_preproc(image, target):
    """A stand-in augmentation: mirrors the image and doubles the targets."""
    return image[:, ::-1].copy(), target * 2


DATASET_CASES = (
    Case("four images: 20-value, -1-landmark, 4-value and empty face lines", _dataset_case),
    Case("with a preproc", lambda d: _dataset_case(d, _flip_preproc)),
)


def _call_dataset(ns, x, dev):
    from pathlib import Path as _Path

    import numpy as np

    ds = ns.WiderFaceDetection(x["txt_path"], x["preproc"]) if x["preproc"] else \
        ns.WiderFaceDetection(x["txt_path"])
    paths = [str(_Path(p).resolve().relative_to(_Path(x["root"]).resolve())) for p in ds.imgs_path]
    items = [ds[i] for i in range(len(ds))]
    return {"len": len(ds), "paths": paths, "words": [[list(map(float, w)) for w in ws] for ws in ds.words],
            "images": [np.asarray(im) for im, _ in items], "targets": [t for _, t in items]}


UNITS = (
    Unit("face_stats", DATA_NB, lambda ns, x, dev: ns.face_stats(x["annotations"]), STATS_CASES,
         same_device=False),
    Unit("centre_heatmap", DATA_NB,
         lambda ns, x, dev: ns.centre_heatmap(x["annotations"], x["image_sizes"], bins=x["bins"]),
         HEATMAP_CASES, same_device=False),
    Unit("out_of_range", DATA_NB, lambda ns, x, dev: ns.out_of_range(x["annotations"], x["image_sizes"]),
         OUT_OF_RANGE_CASES, same_device=False),
    Unit("overlap_fraction", DATA_NB, lambda ns, x, dev: ns.overlap_fraction(x["annotations"]),
         OVERLAP_CASES, same_device=False),
    Unit("widerface_dataset", DATA_NB, _call_dataset, DATASET_CASES, same_device=False),
)
