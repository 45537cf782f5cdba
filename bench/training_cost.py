"""Training cost of every homework's CPU demo config against the RetinaFace demo's model, and the
memory format that trains each fastest, measured in the same run.

    python -m bench.training_cost [--batch N] [--repeats 3] [--threads 2]

Times one forward + backward pass of a training batch for RetinaFace MobileNet-0.25 at 320 px (the
demo's model and crop), the DSFD CPU configs, TinaFace's lite config and R-FCN's at their demo crops,
at each demo's own batch size (``DEMO["batch_size"]``; ``--batch`` sets one for all), and prints
seconds per image and the ratio to RetinaFace: with the RetinaFace demo's measured images/s, the ratio
predicts another demo's training time on the same machine. Use the demo's thread count (2 on the
course machine): ratios measured with 1 thread came out 1.6-2x lower than the demos then measured
with 2.

Each model is timed in both memory formats, interleaved (contiguous, channels-last, contiguous, ...:
the best of ``--repeats`` rounds, each round exposing both to the same load), on two copies of the same
weights. The last column is channels-last time / contiguous time; a demo sets ``channels_last`` in its
``DEMO`` where that ratio is clearly below 1 (its result then changes: float sums run in another order).
"""
from __future__ import annotations

import argparse
import copy

import torch

from bench.timing import best_times
from utils.detectors import adapter, load_model

PEERS = (("retinaface", "mobilenet0.25", 320), ("dsfd", "vgg16_lite", 256),
         ("dsfd", "efficientnet_b0_lite", 256), ("dsfd", "efficientnet_b1_lite", 256),
         ("tinaface", "lite", 256), ("rfcn", "resnet18-lite", 320))


def training_step(model: torch.nn.Module, size: int, batch: int, channels_last: bool):
    """One forward + backward of ``model`` (training mode) on a random batch [batch, 3, size, size]."""
    model.train()
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    if channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step():
        model.zero_grad(set_to_none=True)
        out = model(images)
        outputs = out.values() if isinstance(out, dict) else out
        sum(o.float().mean() for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad).backward()
    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="one batch size for all (default: each demo's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seconds, nhwc, batches = {}, {}, {}
    for key in PEERS:
        hw, cfg, size = key
        batches[key] = args.batch or adapter(hw).DEMO["batch_size"]
        model = load_model(hw, cfg)
        steps = {"contiguous": training_step(model, size, batches[key], False),
                 "channels_last": training_step(copy.deepcopy(model), size, batches[key], True)}
        steps["contiguous"](), steps["channels_last"]()          # warm-up: oneDNN builds its kernels
        best = best_times(steps, args.repeats)
        seconds[key], nhwc[key] = best["contiguous"] / batches[key], best["channels_last"] / batches[key]
    base = seconds[PEERS[0]]
    for key, value in seconds.items():
        hw, cfg, size = key
        print(f"{hw:>10} {cfg:<22} {size:4d} px, batch {batches[key]:2d}: {value:.3f} s/image forward+backward, "
              f"x{value / base:.2f} RetinaFace; channels-last {nhwc[key]:.3f} s/image, x{nhwc[key] / value:.2f}")


if __name__ == "__main__":
    main()
