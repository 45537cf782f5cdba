"""Run-to-run determinism of the demo's training on one machine: the same settings (seed, torch
threads) give bit-identical losses and weights, with a DataLoader worker as in ``make demo``.

What still moves a demo's AP between machines is outside the kit's code: the number of torch threads
(``utils.demo --threads``; the CPU kernels split their float sums per thread) and the CPU's
instruction set (oneDNN's AVX2 and AVX-512 convolutions round differently)."""
from __future__ import annotations

import csv

import pytest
import torch

from data.synthetic import generate
from utils.demo import DEMO_RUN
from utils.detectors import adapter, config as model_config
from utils.experiment import train_detector
from utils.training.config import TrainConfig

MODEL = "retinaface"
CROP = 160            # px; the demo trains on 320
ITERATIONS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism-data")
    generate(root, 8, 0, long_side=320, seed=1)
    return root


def _train(data, out) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The demo's recipe (its run settings and RetinaFace's budget) for 3 steps of 4 small crops;
    returns the logged losses (as written, repr of the float) and the trained weights."""
    module = adapter(MODEL)
    budget = {k: v for k, v in module.DEMO.items() if k != "image_size"}
    budget.update(max_iterations=ITERATIONS, batch_size=4)
    config = TrainConfig(**{**DEMO_RUN, **budget, "ckpt_every": 0}, out_dir=str(out))
    result = train_detector(MODEL, model_config(MODEL, module.LITE, image_size=CROP), data, config)
    with open(result.history_path) as f:
        rows = list(csv.DictReader(f))
    losses = [row[name] for row in rows for name in row if name not in ("iteration", "epoch", "lr",
                                                                        "images_per_s")]
    return losses, {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def test_two_demo_trainings_give_bit_identical_losses_and_weights(data, tmp_path):
    assert DEMO_RUN["num_workers"] >= 1  # the worker path (its seeding, OpenCV threads) is exercised
    losses_a, weights_a = _train(data, tmp_path / "a")
    losses_b, weights_b = _train(data, tmp_path / "b")
    assert len(losses_a) >= ITERATIONS and losses_a == losses_b
    assert weights_a.keys() == weights_b.keys()
    changed = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
    assert not changed, f"weights differ between two identical runs: {changed[:5]}"

