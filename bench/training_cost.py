"""Training cost of the extension homeworks' CPU configs against the RetinaFace demo's model, measured
in the same run.

    python -m bench.training_cost [--batch 4] [--repeats 3] [--threads 2]

Times one forward + backward pass of a training batch (best of ``--repeats``) for RetinaFace
MobileNet-0.25 at 320 px (the demo's model and crop), the DSFD CPU configs and TinaFace's lite config
at their demo crops (256 px), and prints seconds per image and the ratio to RetinaFace: with the
RetinaFace demo's measured images/s, the ratio predicts another demo's training time on the same
machine. Use the demo's thread count (2 on the course machine): ratios measured with 1 thread came out
1.6-2x lower than the demos then measured with 2.
"""
from __future__ import annotations

import argparse

import torch

from bench.timing import best_time
from utils.detectors import load_model

PEERS = (("retinaface", "mobilenet0.25", 320), ("dsfd", "vgg16_lite", 256),
         ("dsfd", "efficientnet_b0_lite", 256), ("dsfd", "efficientnet_b1_lite", 256),
         ("tinaface", "lite", 256))


def step_time(model: torch.nn.Module, size: int, batch: int, repeats: int) -> float:
    model.train()
    images = torch.randn(batch, 3, size, size)

    def step():
        model.zero_grad(set_to_none=True)
        sum(o.float().mean() for o in model(images)).backward()
    return best_time(step, repeats)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seconds = {}
    for hw, cfg, size in PEERS:
        seconds[(hw, cfg, size)] = step_time(load_model(hw, cfg), size, args.batch, args.repeats) / args.batch
    base = seconds[PEERS[0]]
    for (hw, cfg, size), value in seconds.items():
        print(f"{hw:>10} {cfg:<22} {size:4d} px: {value:.3f} s/image forward+backward, x{value / base:.2f} RetinaFace")


if __name__ == "__main__":
    main()
