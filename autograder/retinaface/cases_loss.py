"""Graded units of the RetinaFace homework, Part 7 (``5_loss_training.ipynb``): the multibox loss
with hard negative mining and the sigmoid focal loss. Each case returns the loss values and the
gradients they send back to the predictions."""
from __future__ import annotations

import torch

from autograder.units import Case, ScoringSide, Unit
from detector.retinaface.config import cfg_mnet

oracles = ScoringSide("autograder.retinaface.oracles")  # builds inputs; never imported by the worker

LOSS_NB = "5_loss_training.ipynb"
LOSS_IMAGE = 64  # the loss cases use the anchors of a 64 x 64 input (168 anchors)


def loss_inputs(seed: int, faces_per_image: tuple[int, ...], landmarks: bool = True) -> dict:
    """Random predictions for a batch and normalised targets [n_i, 15] that match some anchors."""
    g = torch.Generator().manual_seed(seed)
    num_priors = len(loss_priors())
    batch = len(faces_per_image)
    predictions = (torch.randn(batch, num_priors, 4, generator=g),
                   torch.randn(batch, num_priors, 2, generator=g) * 2,
                   torch.randn(batch, num_priors, 10, generator=g))
    targets = []
    for n in faces_per_image:
        side = 0.15 + torch.rand(n, 1, generator=g) * 0.5                   # 10 to 40 px faces
        xy = torch.rand(n, 2, generator=g) * (1 - side)
        boxes = torch.cat([xy, xy + side], dim=1)
        points = xy.repeat(1, 5) + torch.rand(n, 10, generator=g) * side
        flag = torch.ones(n, 1) if landmarks else torch.where(
            torch.arange(n)[:, None] % 2 == 0, 1.0, -1.0)
        points = torch.where(flag > 0, points, torch.full_like(points, -1.0))
        targets.append(torch.cat([boxes, points, flag], dim=1))
    return {"predictions": predictions, "targets": targets, "image_size": LOSS_IMAGE,
            "priors": loss_priors(LOSS_IMAGE)}  # built here: the worker has no oracle


def loss_priors(size: int = LOSS_IMAGE) -> torch.Tensor:
    """The anchors of a square input, from their definition (the loss cases must not depend on the
    student's PriorBox)."""
    return oracles.prior_boxes(cfg_mnet, (size, size)).float()


def _call_multibox(ns, x, dev):
    priors = x["priors"]
    predictions = tuple(p.detach().clone().requires_grad_(True) for p in x["predictions"])
    loss_l, loss_c, loss_landm = ns.MultiBoxLoss(cfg_mnet)(predictions, priors, x["targets"])
    (cfg_mnet["loc_weight"] * loss_l + loss_c + loss_landm).backward()
    return (loss_l.detach(), loss_c.detach(), loss_landm.detach(), *(p.grad for p in predictions))


MULTIBOX_CASES = (
    Case("two images with 3 and 1 faces", lambda d: loss_inputs(40, (3, 1))),
    Case("faces with and without landmarks", lambda d: loss_inputs(41, (4, 2), landmarks=False)),
    Case("an image without faces in the batch", lambda d: loss_inputs(42, (2, 0, 3))),
    Case("a batch of 4 crowded images", lambda d: loss_inputs(43, (8, 6, 9, 7)), public=False),
)


def _focal_inputs(seed: int, shape: tuple[int, ...], alpha: float, gamma: float, reduction: str,
                  scale: float = 3.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(*shape, generator=g) * scale
    targets = (torch.rand(*shape, generator=g) < 0.3).float()
    return {"inputs": inputs, "targets": targets, "alpha": alpha, "gamma": gamma, "reduction": reduction}


def _call_focal(ns, x, dev):
    inputs = x["inputs"].detach().clone().requires_grad_(True)
    loss = ns.sigmoid_focal_loss(inputs, x["targets"], alpha=x["alpha"], gamma=x["gamma"],
                                 reduction=x["reduction"])
    loss.sum().backward()
    return loss.detach(), inputs.grad


FOCAL_CASES = (
    Case("defaults (alpha 0.25, gamma 2), no reduction", lambda d: _focal_inputs(50, (6, 5), 0.25, 2.0, "none")),
    Case("sum", lambda d: _focal_inputs(51, (100,), 0.25, 2.0, "sum")),
    Case("mean", lambda d: _focal_inputs(52, (4, 25), 0.25, 2.0, "mean")),
    Case("alpha < 0 disables the weighting", lambda d: _focal_inputs(53, (50,), -1.0, 2.0, "none")),
    Case("gamma 0 is weighted cross-entropy", lambda d: _focal_inputs(54, (50,), 0.5, 0.0, "none")),
    Case("large logits stay finite", lambda d: _focal_inputs(55, (40,), 0.25, 2.0, "none", scale=60.0)),
    Case("gamma 5, batch of 3 x 1000", lambda d: _focal_inputs(56, (3, 1000), 0.75, 5.0, "sum"), public=False),
)


UNITS = (
    Unit("multibox_loss", LOSS_NB, _call_multibox, MULTIBOX_CASES, depends=("match",)),
    Unit("focal_loss", LOSS_NB, _call_focal, FOCAL_CASES,
         forbidden=("torchvision.ops.sigmoid_focal_loss", "torchvision.ops.focal_loss.sigmoid_focal_loss")),
)
