"""Training settings shared by every detector's training CLI (RetinaFace, DSFD, TinaFace, R-FCN).

``TrainConfig`` holds the settings ``utils.training.train.fit`` reads; ``add_train_args`` puts the
shared flags on a task's argparse parser and ``config_from_args`` turns the parsed flags back into a
``TrainConfig``, so every task CLI spells ``--epochs``, ``--lr``, ``--resume auto`` ... the same way.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine")  # any other: fit(..., lr_schedule=) (utils.training.optim)
AMP_MODES = ("bf16", "fp16")
RESUME_LATEST = "auto"  # --resume auto: the newest checkpoint in the output folder, if any


@dataclass
class TrainConfig:
    """Settings of one training run. Sizes count per process unless the name says global."""

    epochs: int = 1                       # passes over the data (ignored when max_iterations is set)
    max_iterations: int | None = None     # stop after this many optimizer steps instead
    batch_size: int = 8                   # images per process per step; global = this x processes
    lr: float = 1e-3                      # peak learning rate
    momentum: float = 0.9                 # SGD momentum (AdamW: beta1)
    weight_decay: float = 5e-4            # as in the RetinaFace homework
    optimizer: str = "sgd"                # 'sgd' | 'adamw'
    schedule: str = "step"                # 'step' (homework) | 'cosine' (TinaFace)
    milestones: tuple[int, ...] = ()      # step schedule: epochs at which lr is multiplied by gamma
    gamma: float = 0.1                    # step schedule decay factor
    warmup_iterations: int = 0            # linear warmup length (both schedules)
    warmup_ratio: float = 1e-3            # warmup starts at lr x warmup_ratio
    min_lr_ratio: float = 0.0             # cosine schedule ends at lr x min_lr_ratio
    clip_grad_norm: float | None = None   # max global L2 norm of the gradients; None: no clipping
    amp: str | None = None                # None | 'bf16' (CPU or CUDA) | 'fp16' (CUDA only)
    channels_last: bool = False           # NHWC memory format for the model and the images
    sync_bn: bool = False                 # data-parallel on CUDA: BatchNorm statistics over all processes
    num_workers: int = 0                  # DataLoader worker processes per training process
    seed: int = 0                         # data order, augmentation and dropout all derive from it
    device: str = "auto"                  # 'auto' (cuda when available) | 'cpu' | 'cuda' | 'cuda:1'
    out_dir: str = "outputs/train"        # log CSV and checkpoints/ go here
    ckpt_every: int = 0                   # also checkpoint every N iterations (0: per epoch only)
    keep_last: int = 3                    # periodic checkpoints kept (best.pt is kept apart)
    resume: str | None = None             # None | 'auto' | path of a training checkpoint
    log_every: int = 50                   # text progress line every N iterations when no tty bar

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.amp is not None:
            _check_choice("amp", self.amp, AMP_MODES)
        _check_positive("epochs", self.epochs)
        _check_positive("batch_size", self.batch_size)
        _check_positive("keep_last", self.keep_last)
        if self.max_iterations is not None:
            _check_positive("max_iterations", self.max_iterations)
        for name in ("lr", "warmup_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "momentum", "min_lr_ratio", "warmup_iterations",
                     "num_workers", "ckpt_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"TrainConfig.gamma must be in (0, 1], got {self.gamma!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"TrainConfig.clip_grad_norm must be > 0 or None, "
                             f"got {self.clip_grad_norm!r}")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m <= 0 for m in self.milestones):
            raise ValueError(f"TrainConfig.milestones must be increasing positive epochs, "
                             f"got {self.milestones!r}")

    def to_dict(self) -> dict:
        """Plain values only (no dataclass), so a checkpoint loads with ``weights_only=True``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"TrainConfig.{name} must be one of {choices}, got {value!r}")


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")


def add_train_args(parser: argparse.ArgumentParser,
                   defaults: TrainConfig | None = None) -> argparse.ArgumentParser:
    """Add the shared training flags to ``parser``; ``defaults`` sets a task's own defaults.

    Flags: --epochs --iterations --batch-size --lr --momentum --weight-decay --optimizer
    --schedule --milestones --gamma --warmup --warmup-ratio --min-lr-ratio --clip --amp
    --channels-last --workers --seed --device --out --ckpt-every --keep-last --resume --log-every.
    """
    d = defaults or TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("--iterations", type=int, default=d.max_iterations,
                   help="stop after this many steps (overrides --epochs)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="images per process")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="step: x gamma at each milestone epoch; cosine: decay to lr x min-lr-ratio")
    g.add_argument("--milestones", type=int, nargs="*", default=list(d.milestones),
                   help="epochs at which the step schedule multiplies lr by gamma")
    g.add_argument("--gamma", type=float, default=d.gamma)
    g.add_argument("--warmup", type=int, default=d.warmup_iterations,
                   help="linear warmup iterations")
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    g.add_argument("--clip", type=float, default=d.clip_grad_norm,
                   help="clip the gradients' global L2 norm to this value")
    g.add_argument("--amp", choices=AMP_MODES, default=d.amp,
                   help="mixed precision: bf16 (CPU/CUDA) or fp16 (CUDA)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   default=d.channels_last)
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=d.sync_bn,
                   help="under torchrun on CUDA: SyncBatchNorm (statistics over the global batch)")
    g.add_argument("--workers", type=int, default=d.num_workers, help="DataLoader workers")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    g.add_argument("--out", default=d.out_dir, help="folder for the log CSV and checkpoints/")
    g.add_argument("--ckpt-every", type=int, default=d.ckpt_every,
                   help="checkpoint every N iterations too (0: once per epoch)")
    g.add_argument("--keep-last", type=int, default=d.keep_last)
    g.add_argument("--resume", nargs="?", const=RESUME_LATEST, default=d.resume,
                   metavar="PATH|auto", help="continue from a checkpoint (bare flag: auto)")
    g.add_argument("--log-every", type=int, default=d.log_every)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` for flags parsed from a parser that ``add_train_args`` extended."""
    return TrainConfig(
        epochs=args.epochs, max_iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        optimizer=args.optimizer, schedule=args.schedule, milestones=tuple(args.milestones),
        gamma=args.gamma, warmup_iterations=args.warmup, warmup_ratio=args.warmup_ratio,
        min_lr_ratio=args.min_lr_ratio, clip_grad_norm=args.clip, amp=args.amp,
        channels_last=args.channels_last, sync_bn=args.sync_bn, num_workers=args.workers, seed=args.seed,
        device=args.device, out_dir=args.out, ckpt_every=args.ckpt_every,
        keep_last=args.keep_last, resume=args.resume, log_every=args.log_every)
