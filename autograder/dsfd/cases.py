"""Graded units of the DSFD homework: where each answer cell lives, how it is called, and the
deterministic inputs it runs on, in notebook order. Checks and points are in ``test_dsfd*.py``."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from autograder.modules import MODEL_DTYPE, as_module, deterministic_weights, parameter_shapes, run_deterministic
from autograder.units import Case, Unit
from detector.dsfd.backbones import efficientnet_features
from detector.dsfd.boxes import match_anchors, overlaps
from detector.dsfd.config import ANCHOR_SIZES, STEPS, get_config

MODEL_NB = "1_model.ipynb"
SCALING_NB = "2_efficientnet_scaling.ipynb"
TRAINING_NB = "3_anchors_loss_sampling.ipynb"
SOURCE_STRIDES = (4, 8, 16, 32)


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=MODEL_DTYPE)


# -- Part 1: L2Norm, upsample-product, FEM ----------------------------------------------------------
def _run_l2norm(ns, x, device):
    module = as_module(ns.L2Norm(x["channels"], x["scale"]), f"L2Norm({x['channels']}, {x['scale']})")
    if "x" not in x:
        return {"shapes": parameter_shapes(module), "weight": module.weight.detach().double().cpu()}
    return run_deterministic(module, x["x"], device)


L2NORM_INIT_CASE = "names and initial weight (C = 6, scale 10)"
L2NORM_CASES = (
    Case(L2NORM_INIT_CASE, lambda d: {"channels": 6, "scale": 10.0}),
    Case("[2, 6, 3, 4] input", lambda d: {"channels": 6, "scale": 8.0, "x": _randn(1, 2, 6, 3, 4)}),
    Case("[1, 5, 2, 2] input with an all-zero location",
         lambda d: {"channels": 5, "scale": 5.0, "x": _randn(2, 1, 5, 2, 2).index_fill(3, torch.tensor([0]), 0.0)},
         public=False),
)


def _run_upsample_product(ns, x, device):
    return ns.upsample_product(x["x"], x["y"])


UPSAMPLE_CASES = (
    Case("2x: [1, 3, 2, 3] onto [1, 3, 4, 6]", lambda d: {"x": _randn(3, 1, 3, 2, 3), "y": _randn(4, 1, 3, 4, 6)}),
    Case("odd sizes: [2, 2, 3, 5] onto [2, 2, 5, 9]", lambda d: {"x": _randn(5, 2, 2, 3, 5), "y": _randn(6, 2, 2, 5, 9)}),
    Case("1 x 1 onto [1, 4, 3, 2]", lambda d: {"x": _randn(7, 1, 4, 1, 1), "y": _randn(8, 1, 4, 3, 2)}, public=False),
)


def _run_fem(ns, x, device):
    module = as_module(ns.FEM(x["channels"]), f"FEM({x['channels']})")
    if "x" not in x:
        return parameter_shapes(module)
    return run_deterministic(module, x["x"], device)


FEM_NAMES_CASE = "names and shapes, C = 7"
FEM_CASES = (
    Case(FEM_NAMES_CASE, lambda d: {"channels": 7}),
    Case("names and shapes, C = 256", lambda d: {"channels": 256}),
    Case("[1, 7, 9, 8] input", lambda d: {"channels": 7, "x": _randn(9, 1, 7, 9, 8)}),
    Case("[2, 6, 4, 5] input", lambda d: {"channels": 6, "x": _randn(10, 2, 6, 4, 5)}, public=False),
)


# -- Part 1: EfficientNet sources --------------------------------------------------------------------
def _strided_features() -> torch.nn.Sequential:
    """A toy backbone: strides 2, 2, 4, 4, 8, 8, 16 then a 'head' (the last module, not a candidate)."""
    layers, channels = [], [3, 4, 4, 6, 6, 8, 8, 8, 8]
    for k, stride in enumerate((2, 1, 2, 1, 2, 1, 2, 1)):
        layers.append(torch.nn.Conv2d(channels[k], channels[k + 1], 3, stride=stride, padding=1))
    return torch.nn.Sequential(*layers)


def _run_find_taps(ns, x, device):
    features = x["features"]()
    taps = ns.find_taps(features, x["strides"], x["image_size"])
    return [int(t) for t in taps]


def _run_sources(ns, x, device):
    torch.manual_seed(0)
    features = efficientnet_features(x["backbone"], x["width"])
    module = as_module(ns.EfficientNetSources(features, x["taps"]), "EfficientNetSources(features, taps)")
    return list(run_deterministic(module, x["image"], device))


def _run_efficientnet_sources(ns, x, device):
    return _run_find_taps(ns, x, device) if "strides" in x else _run_sources(ns, x, device)


def _taps_inputs(backbone: str, width: float) -> dict:
    return {"features": functools.partial(efficientnet_features, backbone, width), "strides": SOURCE_STRIDES,
            "image_size": 128, "backbone": backbone}


TAPS_CASES = (
    Case("find_taps, EfficientNet-B0", lambda d: _taps_inputs("efficientnet_b0", 1.0)),
    Case("find_taps, EfficientNet-B1", lambda d: _taps_inputs("efficientnet_b1", 1.0)),
    Case("find_taps, EfficientNet-B1 at width 0.5", lambda d: _taps_inputs("efficientnet_b1", 0.5), public=False),
    Case("find_taps, a toy backbone, strides (2, 8, 16)",
         lambda d: {"features": _strided_features, "strides": (2, 8, 16), "image_size": 64}, public=False),
)
SOURCES_CASES = (
    Case("EfficientNetSources, B0 at width 0.5, taps [2, 3, 5, 7], 1 x 3 x 32 x 32",
         lambda d: {"backbone": "efficientnet_b0", "width": 0.5, "taps": [2, 3, 5, 7], "image": _randn(11, 1, 3, 32, 32)}),
    Case("EfficientNetSources, B1 at width 0.5, taps [2, 3, 5, 7], 1 x 3 x 32 x 64",
         lambda d: {"backbone": "efficientnet_b1", "width": 0.5, "taps": [2, 3, 5, 7], "image": _randn(12, 1, 3, 32, 64)},
         public=False),
)
EFFICIENTNET_CASES = TAPS_CASES + SOURCES_CASES


# -- Part 1: the model --------------------------------------------------------------------------------
def _run_dsfd(ns, x, device):
    cfg = get_config(x["config"], **x.get("overrides", {}))
    model = as_module(ns.DSFD(cfg), f"DSFD(get_config({x['config']!r}))")
    if "image" not in x:
        return parameter_shapes(model)
    model = deterministic_weights(model.to(device=device, dtype=MODEL_DTYPE)).eval()
    with torch.no_grad():
        second = model(x["image"])
        model.training = True      # the top module only: BatchNorm and dropout stay in eval mode
        outputs = model(x["image"])
    second_ok = (isinstance(second, (tuple, list)) and len(second) == 2 and isinstance(outputs, (tuple, list))
                 and len(outputs) == 4 and all(torch.equal(a, b) for a, b in zip(second, outputs[2:])))
    return {"outputs": outputs, "eval_is_second_shot": bool(second_ok)}


DSFD_NAMES_CASE = "state_dict names of the public checkpoint (vgg16)"
DSFD_NAME_CASES = (
    Case(DSFD_NAMES_CASE, lambda d: {"config": "vgg16"}),
    Case("state_dict names, efficientnet_b0", lambda d: {"config": "efficientnet_b0"}),
    Case("state_dict names, vgg16_lite without FEM", lambda d: {"config": "vgg16_lite", "overrides": {"fem": False}},
         public=False),
)
DSFD_FORWARD_CASES = (
    Case("vgg16_lite, 1 x 3 x 128 x 128", lambda d: {"config": "vgg16_lite", "image": _randn(13, 1, 3, 128, 128)}),
    Case("efficientnet_b0_lite, 1 x 3 x 128 x 128",
         lambda d: {"config": "efficientnet_b0_lite", "image": _randn(14, 1, 3, 128, 128)}),
    Case("vgg16_lite, 1 x 3 x 128 x 256", lambda d: {"config": "vgg16_lite", "image": _randn(15, 1, 3, 128, 256)},
         public=False),
)


# -- Part 2: compound scaling ----------------------------------------------------------------------
# (width, depth) of EfficientNet-B0..B7 (torchvision's efficientnet_b0..b7)
EFFICIENTNET_MULTIPLIERS = ((1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), (1.4, 1.8), (1.6, 2.2),
                            (1.8, 2.6), (2.0, 3.1))
B0_FILTERS = (32, 16, 24, 40, 80, 112, 192, 320)     # stem, then the seven stages' outputs
B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def _run_compound_scaling(ns, x, device):
    if "phis" in x:
        return [ns.compound_scaling(phi, **x["kwargs"]) for phi in x["phis"]]
    if "filters" in x:
        return [[int(ns.round_filters(f, w)) for f in x["filters"]] for w in x["widths"]]
    return [[int(ns.round_repeats(r, d)) for r in x["repeats"]] for d in x["depths"]]


COMPOUND_CASES = (
    Case("compound_scaling(phi) for phi = 0..4", lambda d: {"phis": [0, 1, 2, 3, 4], "kwargs": {}}),
    Case("compound_scaling with other alpha, beta, gamma, base_resolution",
         lambda d: {"phis": [1, 2.5], "kwargs": {"alpha": 1.3, "beta": 1.05, "gamma": 1.2, "base_resolution": 256}},
         public=False),
)
FILTER_CASES = (
    Case("round_filters: B0..B7 stem and stage widths",
         lambda d: {"filters": list(B0_FILTERS), "widths": [w for w, _ in EFFICIENTNET_MULTIPLIERS]}),
    Case("round_filters: small and awkward widths (never below 8, never below 90 %)",
         lambda d: {"filters": [1, 3, 12, 20, 36, 100, 359], "widths": [0.1, 0.25, 0.5, 0.75, 1.15, 1.33]},
         public=False),
)
REPEAT_CASES = (
    Case("round_repeats: B0..B7 stage depths",
         lambda d: {"repeats": list(B0_REPEATS), "depths": [dd for _, dd in EFFICIENTNET_MULTIPLIERS]}),
)
SCALING_CASES = COMPOUND_CASES + FILTER_CASES + REPEAT_CASES


# -- Part 3: anchors, compensation, loss, sampling ----------------------------------------------
def _run_pal_priors(ns, x, device):
    return tuple(ns.pal_priors(x["cfg"], x["image_size"]))


PRIOR_CASES = (
    Case("128 x 128", lambda d: {"cfg": get_config("vgg16"), "image_size": (128, 128)}, reference=False),
    Case("640 x 640", lambda d: {"cfg": get_config("vgg16"), "image_size": (640, 640)}, reference=False),
    Case("256 x 384 (H x W)", lambda d: {"cfg": get_config("vgg16"), "image_size": (256, 384)}, reference=False),
    Case("100 x 140 (ceil), other anchor sizes",
         lambda d: {"cfg": get_config("vgg16", anchor_sizes=[12, 24, 48, 96, 192, 384]), "image_size": (100, 140)},
         public=False, reference=False),
)


def random_faces(n: int, g: torch.Generator, low: float = 0.02, high: float = 0.3) -> torch.Tensor:
    """[n, 4] float64 faces (x1, y1, x2, y2) normalised, sides in [low, high]."""
    wh = low + (high - low) * torch.rand(n, 2, generator=g, dtype=torch.float64)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (1 - wh)
    return torch.cat([xy, xy + wh], dim=1)


def _compensation_inputs(faces: int, size: int, seed: int, min_anchors: int, min_iou: float = 0.1) -> dict:
    g = torch.Generator().manual_seed(seed)
    truths = random_faces(faces, g, 0.03, 0.4)
    priors = _square_priors(size, STEPS, ANCHOR_SIZES)
    iou = overlaps(truths, priors)
    return {"iou": iou, "assigned": match_anchors(iou, 0.35), "min_anchors": min_anchors, "min_iou": min_iou}


def _square_priors(size: int, steps, sizes) -> torch.Tensor:
    """[P, 4] float64 anchors (cx, cy, w, h) of a size x size image, one per cell of each level: the
    case inputs' own anchors (built here, independently of the student's pal_priors)."""
    rows = []
    for step, s in zip(steps, sizes):
        n = -(-size // step)
        c = (torch.arange(n, dtype=torch.float64) + 0.5) * step / size
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        rows.append(torch.stack([cx.reshape(-1), cy.reshape(-1), torch.full((n * n,), s / size, dtype=torch.float64),
                                 torch.full((n * n,), s / size, dtype=torch.float64)], dim=1))
    return torch.cat(rows)


def _known_compensation(_dir: Path) -> dict:
    """Face 0 has one matched anchor (0) and candidates 2 (0.3), 4 (0.3), 3 (0.2), 5 (0.05);
    anchor 1 belongs to face 1 already. Face 1 has 2 anchors."""
    iou = torch.tensor([[0.6, 0.5, 0.3, 0.2, 0.3, 0.05],
                        [0.0, 0.7, 0.1, 0.25, 0.0, 0.0]], dtype=torch.float64)
    assigned = torch.tensor([0, 1, -1, -1, -1, -1])
    return {"iou": iou, "assigned": assigned, "min_anchors": 3, "min_iou": 0.1}


def _run_compensation(ns, x, device):
    return ns.anchor_compensation(x["iou"], x["assigned"], x["min_anchors"], x["min_iou"])


COMPENSATION_CASES = (
    Case("known answer: 6 anchors, 2 faces, N = 3", _known_compensation),
    Case("8 random faces on a 128 x 128 grid, N = 6", lambda d: _compensation_inputs(8, 128, 20, 6)),
    Case("3 random faces, N = 2, min_iou 0.2", lambda d: _compensation_inputs(3, 128, 21, 2, 0.2)),
    Case("20 random faces on a 128 x 128 grid, N = 8", lambda d: _compensation_inputs(20, 128, 22, 8), public=False),
    Case("no faces", lambda d: {"iou": torch.zeros(0, 5, dtype=torch.float64), "assigned": torch.full((5,), -1),
                                "min_anchors": 6, "min_iou": 0.1}, public=False),
)


def _loss_inputs(seed: int, batch: int, faces: tuple, size: int = 128, **overrides) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg = get_config("vgg16_lite", **overrides)
    first = _square_priors(size, cfg["steps"], [s / 2 for s in cfg["anchor_sizes"]]).float()
    second = _square_priors(size, cfg["steps"], cfg["anchor_sizes"]).float()
    p = first.shape[0]
    predictions = tuple(torch.randn(batch, p, k, generator=g) for k in (4, 2, 4, 2))
    targets = [random_faces(n, g, 0.03, 0.5).float() for n in faces]
    return {"cfg": cfg, "predictions": predictions, "priors": (first, second), "targets": targets}


def _run_loss(ns, x, device):
    """The loss parts and, since the gradient is what trains, the gradient of their sum with respect
    to each prediction (``gradients``: loc1, conf1, loc2, conf2; zeros where nothing flows back)."""
    loss = ns.ProgressiveAnchorLoss(x["cfg"])
    predictions = tuple(p.detach().clone().requires_grad_(True) for p in x["predictions"])
    parts = dict(loss(predictions, x["priors"], x["targets"]))
    if not all(isinstance(parts.get(k), torch.Tensor) for k in LOSS_PARTS):
        return parts  # the check names what is missing or of the wrong type
    total = sum(parts[k].sum() for k in LOSS_PARTS)
    grads = torch.autograd.grad(total, predictions, allow_unused=True) if total.requires_grad else (None,) * 4
    parts = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in parts.items()}
    parts["gradients"] = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(predictions, grads))
    return parts


LOSS_PARTS = ("loc_first", "conf_first", "loc_second", "conf_second")
LOSS_CASES = (
    Case("batch of 2, 3 and 1 faces", lambda d: _loss_inputs(30, 2, (3, 1))),
    Case("batch of 3, one image without faces", lambda d: _loss_inputs(31, 3, (2, 0, 4))),
    Case("lambda = 0.5", lambda d: _loss_inputs(32, 2, (2, 2), pal_weight=0.5)),
    Case("anchor compensation on (N = 6)", lambda d: _loss_inputs(33, 2, (5, 3), min_anchors=6)),
    Case("batch of 2, 8 faces each, lambda = 2", lambda d: _loss_inputs(34, 2, (8, 8), pal_weight=2.0), public=False),
    Case("no faces at all", lambda d: _loss_inputs(35, 2, (0, 0)), public=False),
)


def _das_inputs(seed: int, height: int, width: int, faces: int, crop: int, sizes=(16, 32, 64, 128, 256, 512)) -> dict:
    rng = np.random.default_rng(1000 + seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    wh = rng.uniform(4, min(height, width) / 2, (faces, 2))
    xy = rng.uniform(0, 1, (faces, 2)) * (np.float64([width, height]) - wh)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    return {"image": image, "boxes": boxes, "seed": seed, "anchor_sizes": tuple(sizes), "crop_size": crop}


def _run_das(ns, x, device):
    rng = np.random.default_rng(x["seed"])
    crop, boxes, info = ns.data_anchor_sampling(x["image"], x["boxes"], rng, anchor_sizes=x["anchor_sizes"],
                                                crop_size=x["crop_size"])
    info = dict(info)
    return {"crop": np.asarray(crop), "boxes": np.asarray(boxes, dtype=np.float64), "face": int(info["face"]),
            "anchor": int(info["anchor"]), "ratio": float(info["ratio"]),
            "offset": [int(v) for v in info["offset"]]}


DAS_CASES = tuple(
    Case(f"seed {seed}: {h} x {w} image, {n} faces, crop {c}",
         lambda d, seed=seed, h=h, w=w, n=n, c=c, s=s: _das_inputs(seed, h, w, n, c, s), public=public)
    for seed, h, w, n, c, s, public in (
        (0, 60, 80, 3, 64, (8, 16, 32, 64), True),
        (1, 80, 60, 1, 48, (8, 16, 32, 64), True),
        (2, 90, 120, 5, 64, (16, 32, 64, 128, 256, 512), True),
        (3, 50, 70, 4, 32, (4, 8, 16, 32, 64), True),
        (4, 120, 90, 6, 64, (8, 16, 32, 64), False),
        (5, 70, 70, 2, 40, (16, 32, 64, 128, 256, 512), False),
        (6, 64, 96, 8, 64, (8, 16, 32, 64, 128), False),
    ))


# The library ops the exercises ask the student to write (a call scores the unit 0, naming it).
L2NORM_OPS = ("torch.nn.functional.normalize",)  # a norm of its own (x.norm, sqrt of a sum) is fine
ROUNDING_OPS = ("torchvision.models.efficientnet._make_divisible", "torchvision.models._utils._make_divisible")

UNITS = (
    Unit("l2norm", MODEL_NB, _run_l2norm, L2NORM_CASES, forbidden=L2NORM_OPS),
    Unit("upsample_product", MODEL_NB, _run_upsample_product, UPSAMPLE_CASES),
    Unit("fem", MODEL_NB, _run_fem, FEM_CASES),
    Unit("efficientnet_sources", MODEL_NB, _run_efficientnet_sources, EFFICIENTNET_CASES),
    Unit("dsfd", MODEL_NB, _run_dsfd, DSFD_NAME_CASES + DSFD_FORWARD_CASES,
         depends=("l2norm", "upsample_product", "fem", "efficientnet_sources")),
    Unit("compound_scaling", SCALING_NB, _run_compound_scaling, SCALING_CASES, same_device=False,
         forbidden=ROUNDING_OPS),
    Unit("pal_priors", TRAINING_NB, _run_pal_priors, PRIOR_CASES, same_device=False),
    Unit("anchor_compensation", TRAINING_NB, _run_compensation, COMPENSATION_CASES),
    Unit("progressive_anchor_loss", TRAINING_NB, _run_loss, LOSS_CASES, depends=("anchor_compensation",)),
    Unit("data_anchor_sampling", TRAINING_NB, _run_das, DAS_CASES, same_device=False),
)
