"""Training cost of the extension homeworks' CPU configs against the RetinaFace demo's model, measured
in the same run.

    python -m bench.training_cost [--batch 4] [--repeats 3] [--threads 2]

Times one forward + backward pass of a training batch (best of ``--repeats``) for RetinaFace
MobileNet-0.25 at 320 px (the demo's model and crop), the DSFD CPU configs and TinaFace's lite config
at their demo crops (256 px), and prints seconds per image and the ratio to RetinaFace: with the
RetinaFace demo's measured images/s, the ratio predicts another demo's training time on the same
machine. Use the demo's thread count (2 on the course machine): ratios measured with 1 thread came out
1.6-2x lower than the demos then measured with 2. Each model is timed in both memory formats, and the
last column is channels-last time / contiguous time (a demo sets ``channels_last`` in its ``DEMO`` where
that ratio is clearly below 1).
"""
from __future__ import annotations

import argparse

import torch

from bench.timing import best_time
from utils.detectors import load_model

PEERS = (("retinaface", "mobilenet0.25", 320), ("dsfd", "vgg16_lite", 256),
         ("dsfd", "efficientnet_b0_lite", 256), ("dsfd", "efficientnet_b1_lite", 256),
         ("tinaface", "lite", 256))


def step_time(model: torch.nn.Module, size: int, batch: int, repeats: int,
              channels_last: bool = False) -> float:
    model.train()
    images = torch.randn(batch, 3, size, size)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

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
    seconds, nhwc = {}, {}
    for hw, cfg, size in PEERS:
        seconds[(hw, cfg, size)] = step_time(load_model(hw, cfg), size, args.batch, args.repeats) / args.batch
        nhwc[(hw, cfg, size)] = step_time(load_model(hw, cfg), size, args.batch, args.repeats,
                                          channels_last=True) / args.batch
    base = seconds[PEERS[0]]
    for key, value in seconds.items():
        hw, cfg, size = key
        print(f"{hw:>10} {cfg:<22} {size:4d} px: {value:.3f} s/image forward+backward, x{value / base:.2f} "
              f"RetinaFace; channels-last {nhwc[key]:.3f} s/image, x{nhwc[key] / value:.2f}")


if __name__ == "__main__":
    main()
