"""A tiny deterministic training job for tests/test_train.py: in-process, as a script, or under torchrun.

    python tests/tiny_job.py --out outputs/tiny --epochs 3 --batch-size 4 --ckpt-every 5
    python -m torch.distributed.run --nproc_per_node 2 tests/tiny_job.py --batch-size 2 ...

Random 12x12 "images" with 0-2 face rows [n, 15] each; the augmentation (flip, gain, noise) draws from
an RNG derived from (seed, epoch, index), as the kit's WIDER dataset does. Rank 0 writes the final
weights to OUT/final.pt. Test-only flags make the job hang (to be killed) or produce a NaN loss.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script, the repository root is not on sys.path
    sys.path.insert(0, str(REPO_ROOT))

from utils.training.config import TrainConfig, add_train_args, config_from_args  # noqa: E402
from utils.training.train import TrainResult, fit  # noqa: E402

IMAGE_SIZE = 12
TARGET_COLUMNS = 15            # x1, y1, x2, y2, 5 landmarks (x, y), flag
X_COLUMNS = (0, 2, 4, 6, 8, 10, 12)  # coordinates that a horizontal flip mirrors
FINAL_WEIGHTS = "final.pt"
HANG_MARKER = "hanging"
HANG_SECONDS = 600


class TinyFaces(Dataset):
    """``(image [3, 12, 12] float32, target [n, 15] float32)`` with n = index % 3."""

    def __init__(self, size: int = 32, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        base = np.random.default_rng([self.seed, index])
        image = base.standard_normal((3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
        target = base.uniform(0, 1, (index % 3, TARGET_COLUMNS)).astype(np.float32)
        aug = np.random.default_rng([self.seed, self.epoch, index])
        if aug.random() < 0.5:
            image = image[:, :, ::-1]
            target[:, list(X_COLUMNS)] = 1 - target[:, list(X_COLUMNS)]
        image = image * aug.uniform(0.8, 1.2) + aug.normal(0, 0.1, image.shape).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), torch.from_numpy(target)


def tiny_collate(batch):
    """-> (images [B, 3, 12, 12], list of B targets [n_i, 15]), like detection_collate."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


class TinyNet(nn.Module):
    """conv -> relu -> dropout -> 2x2 pool -> linear: (box [B, 4], face logit [B]) as [B, 5]."""

    def __init__(self, dropout: float = 0.0, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * 4, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.relu(self.conv(images)))
        return self.head(F.adaptive_avg_pool2d(x, 2).flatten(1))


def tiny_criterion(outputs: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """'box': smooth L1 to the mean box of the image (zeros if none); 'face': any face present."""
    outputs = outputs.float()
    box_target = torch.stack([t[:, :4].mean(0) if len(t) else t.new_zeros(4) for t in targets])
    has_face = torch.tensor([float(len(t) > 0) for t in targets], device=outputs.device)
    return {"box": F.smooth_l1_loss(outputs[:, :4], box_target),
            "face": F.binary_cross_entropy_with_logits(outputs[:, 4], has_face)}


class FaultyCriterion:
    """``tiny_criterion`` that hangs or returns NaN at its k-th call (counted from 1 in this process)."""

    def __init__(self, out_dir: str, hang_at: int | None = None, nan_at: int | None = None,
                 nan_part: str = "face") -> None:
        self.out_dir, self.hang_at, self.nan_at, self.nan_part = Path(out_dir), hang_at, nan_at, nan_part
        self.calls = 0

    def __call__(self, outputs, targets):
        self.calls += 1
        if self.calls == self.hang_at and int(os.environ.get("RANK", "0")) == 0:
            (self.out_dir / HANG_MARKER).write_text(str(self.calls))
            time.sleep(HANG_SECONDS)  # the test kills the process meanwhile
        parts = tiny_criterion(outputs, targets)
        if self.calls == self.nan_at:
            parts[self.nan_part] = parts[self.nan_part] * float("nan")
        return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_args(parser, TrainConfig(epochs=3, batch_size=4, lr=0.05, momentum=0.9,
                                       weight_decay=1e-4, out_dir="outputs/tiny_job"))
    parser.add_argument("--dataset-size", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--hang-at-iteration", type=int, help="test only: hang in this step")
    parser.add_argument("--nan-at-iteration", type=int, help="test only: NaN loss in this step")
    parser.add_argument("--nan-part", default="face")
    return parser


def main(argv: list[str] | None = None) -> TrainResult:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    torch.manual_seed(config.seed)  # the same initial weights on every process and every run
    model = TinyNet(args.dropout)
    criterion = tiny_criterion
    if args.hang_at_iteration or args.nan_at_iteration:
        criterion = FaultyCriterion(config.out_dir, args.hang_at_iteration, args.nan_at_iteration,
                                    args.nan_part)
    result = fit(model, criterion, TinyFaces(args.dataset_size, config.seed), config,
                 collate_fn=tiny_collate)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(result.model.state_dict(), Path(config.out_dir) / FINAL_WEIGHTS)
    return result


if __name__ == "__main__":
    main()
