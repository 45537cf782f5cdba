"""The training engine every assignment shares: ``fit(model, criterion, train_set, config)``.

It knows nothing about faces or detectors. The caller brings
* ``model``: any ``nn.Module``; ``model(images)`` gives whatever the criterion expects;
* ``criterion(outputs, targets) -> {'part': scalar tensor, ...}``: the optimised loss is the sum;
* priors, if the loss needs them per input size: either close over them in ``criterion`` or pass
  ``prior_fn(image_size (H, W)) -> priors [P, 4] (cx, cy, w, h)``; fit then computes them once per
  input size, on the device, and calls ``criterion(outputs, targets, priors)``;
* ``train_set``: a Dataset of ``(image, target)``; ``collate_fn`` makes batches from them.

It runs single-process or under ``torchrun --nproc_per_node N`` (DistributedDataParallel; rank 0
writes the CSV log and the checkpoints), resumes exactly from any checkpoint (model, optimizer,
scheduler, AMP scaler, epoch, iteration, sampler position, every process's RNG states) and stops
on the first non-finite loss before it reaches the weights.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from utils.training.batches import build_epoch_loader, move_to_device
from utils.training.checkpoint import (CHECKPOINT_DIRNAME, CHECKPOINT_FORMAT, CheckpointStore,
                                       load_training_checkpoint)
from utils.training.config import RESUME_LATEST, TrainConfig
from utils.training.distributed import (DistContext, all_reduce_mean, barrier, broadcast_from_main,
                                        gather_to_all, setup_distributed, teardown_distributed)
from utils.training.log import TOTAL_COLUMN, CsvTrainLog, Progress
from utils.training.loss_parts import NonFiniteLossError, checked_loss_parts, first_non_finite
from utils.training.optim import LrSchedule, build_optimizer, build_scheduler
from utils.training.rng_state import capture_rng_state, restore_rng_state, seed_everything

__all__ = ["fit", "TrainResult", "TrainingProgress", "NonFiniteLossError", "LOG_NAME"]

LOG_NAME = "train_log.csv"
MIN_STEP_S = 1e-9  # guards images/s against a zero timer difference
AMP_DTYPES = MappingProxyType({"bf16": torch.bfloat16, "fp16": torch.float16})


@dataclass
class TrainResult:
    """What ``fit`` hands back: the trained (unwrapped) model and where its records are."""

    model: torch.nn.Module
    history_path: Path              # the CSV log, one row per iteration
    best_checkpoint: Path | None    # checkpoints/best.pt
    last_checkpoint: Path | None    # newest checkpoints/ckpt_<iteration>.pt
    iterations: int                 # optimizer steps taken in all (resumed runs included)
    epochs_completed: int


@dataclass
class TrainingProgress:
    """Where the run is; saved in every checkpoint so a resume continues at the same batch."""

    epoch: int = 0                  # 0-based epoch in progress
    batch_in_epoch: int = 0         # batches of that epoch already done (the sampler position)
    iteration: int = 0              # optimizer steps done
    epoch_loss_sum: float = 0.0     # sum of this epoch's total losses so far (for "best")
    epoch_loss_count: int = 0
    best_score: float | None = None  # higher is better: evaluate_fn, or -mean epoch loss
    best_iteration: int | None = None


def fit(model: torch.nn.Module, criterion: Callable, train_set: Dataset, config: TrainConfig,
        collate_fn: Callable | None = None, evaluate_fn: Callable[[torch.nn.Module], float] | None = None,
        *, prior_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None,
        lr_schedule: LrSchedule | None = None) -> TrainResult:
    """Train ``model`` in place as ``config`` says; returns a ``TrainResult``.

    evaluate_fn(model) -> float (higher is better) scores the model after each epoch to pick
    ``best.pt`` (under torchrun on rank 0 only, with the unwrapped model in eval mode); without it
    the best epoch is the one with the lowest mean loss. The caller seeds its model's
    initialisation; fit seeds dropout and the data order from ``config.seed`` (+ rank).
    lr_schedule(iteration, iterations_per_epoch, base_lr) -> lr replaces ``config.schedule`` (e.g.
    the TinaFace notebook's ``warmup_cosine_lr``; see ``utils.training.optim.build_scheduler``); a
    resumed run must be given the same one.

    1 and N processes take the same steps when the global batch is the same and the loss is a
    mean over samples; losses normalised per batch (e.g. by the number of matched priors) or
    BatchNorm statistics (per process under DDP) make them differ slightly.
    """
    ctx, device = setup_distributed(config.device)
    try:
        return _Trainer(model, criterion, train_set, config, collate_fn, evaluate_fn, prior_fn,
                        ctx, device, lr_schedule).run()
    finally:
        teardown_distributed(ctx)


VIEW_STRIDE_ERROR = "view size is not compatible with input tensor's size and stride"


@contextlib.contextmanager
def _named_layout_errors(channels_last: bool):
    """Under channels-last, a ``.view`` of a feature map that regroups channels with pixels fails with
    torch's stride message; say that the run's memory format is the cause and what to do."""
    try:
        yield
    except RuntimeError as err:
        if channels_last and VIEW_STRIDE_ERROR in str(err):
            raise RuntimeError(
                "this run trains channels-last (TrainConfig.channels_last=True: feature maps are NHWC in "
                "memory), and a layer or loss calls .view on a map whose memory is not NCHW-contiguous; "
                "use .reshape (or .contiguous().view) there, or train with channels_last=False. "
                f"torch said: {err}") from err
        raise


class _Trainer:
    def __init__(self, model, criterion, train_set, config: TrainConfig, collate_fn, evaluate_fn,
                 prior_fn, ctx: DistContext, device: torch.device,
                 lr_schedule: LrSchedule | None = None) -> None:
        if config.amp == "fp16" and device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use amp='bf16' on the CPU")
        self.model, self.criterion, self.train_set, self.config = model, criterion, train_set, config
        self.collate_fn, self.evaluate_fn, self.prior_fn = collate_fn, evaluate_fn, prior_fn
        self.ctx, self.device = ctx, device
        self.global_batch = config.batch_size * ctx.world_size
        self.iterations_per_epoch = len(train_set) // self.global_batch
        if self.iterations_per_epoch == 0:
            raise ValueError(f"the training set has {len(train_set)} samples, fewer than one global "
                             f"batch ({config.batch_size} x {ctx.world_size} processes)")
        self.total_iterations = config.max_iterations or config.epochs * self.iterations_per_epoch
        self.num_epochs = math.ceil(self.total_iterations / self.iterations_per_epoch)
        self.out_dir = Path(config.out_dir)
        self.store = CheckpointStore(self.out_dir / CHECKPOINT_DIRNAME, config.keep_last)
        self.progress = TrainingProgress()
        self.last_checkpoint: Path | None = None
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        self._rng_to_restore: dict | None = None  # this process's RNG state from the checkpoint

        seed_everything(config.seed + ctx.rank)
        if config.sync_bn and ctx.enabled:
            if device.type != "cuda":  # PyTorch's SyncBatchNorm has no CPU (gloo) implementation
                raise ValueError("sync_bn needs CUDA devices (SyncBatchNorm is CUDA-only in PyTorch); on "
                                 "the CPU each process normalises with its own batch's statistics")
            model = self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config, self.iterations_per_epoch,
                                         self.total_iterations, lr_schedule)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")

    # ---- set-up -------------------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        """Rank 0 decides which checkpoint (if any) every process resumes from."""
        decision = None
        if self.ctx.is_main:
            stale = self.store.remove_stale_temporaries()
            if stale:
                print(f"removed {stale} unfinished checkpoint file(s) in {self.store.folder}")
            resume = self.config.resume
            if resume == RESUME_LATEST:
                decision = self.store.latest()
            elif resume is not None:
                decision = Path(resume)
            elif self.store.periodic():
                decision = FileExistsError(
                    f"{self.store.folder} holds checkpoints of an earlier run; continue it with "
                    f"--resume auto (resume='auto') or train into another --out folder")
        decision = broadcast_from_main(decision, self.ctx)
        if isinstance(decision, Exception):
            raise decision
        return decision

    def _restore(self, path: Path) -> None:
        ckpt = load_training_checkpoint(path)
        saved = ckpt["config"]
        saved_global = saved["batch_size"] * ckpt["world_size"]
        if saved_global != self.global_batch or saved["seed"] != self.config.seed:
            raise ValueError(
                f"{path}: written with global batch {saved_global} ({saved['batch_size']} x "
                f"{ckpt['world_size']} processes) and seed {saved['seed']}; this run has "
                f"{self.global_batch} and seed {self.config.seed}, so the data order cannot be "
                f"continued. Use the same settings, or start afresh from its weights with "
                f"utils.training.checkpoint.load_model_weights")
        progress = TrainingProgress(**ckpt["progress"])
        if progress.iteration != progress.epoch * self.iterations_per_epoch + progress.batch_in_epoch:
            raise ValueError(f"{path}: epoch {progress.epoch} batch {progress.batch_in_epoch} does not "
                             f"match iteration {progress.iteration} with {self.iterations_per_epoch} "
                             f"batches per epoch: was the training set a different size?")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:  # empty when saved without fp16: keep this run's fresh scaler
            self.scaler.load_state_dict(ckpt["scaler"])
        self.progress = progress
        self.last_checkpoint = path
        rng = ckpt["rng"]
        if len(rng) != self.ctx.world_size and self.ctx.is_main:
            print(f"{path}: RNG states of {len(rng)} processes for {self.ctx.world_size} now; "
                  f"random streams (dropout) will differ from an uninterrupted run")
        self._rng_to_restore = rng[self.ctx.rank % len(rng)]

    # ---- one step -----------------------------------------------------------------------------
    def _priors_for(self, images: torch.Tensor) -> torch.Tensor:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        if size not in self._priors:
            self._priors[size] = self.prior_fn(size).to(self.device)
        return self._priors[size]

    def _loss_parts(self, outputs, targets, images) -> dict[str, torch.Tensor]:
        if self.prior_fn is not None:
            return checked_loss_parts(self.criterion(outputs, targets, self._priors_for(images)))
        return checked_loss_parts(self.criterion(outputs, targets))

    def _step(self, net: torch.nn.Module, images, targets) -> dict[str, float]:
        non_blocking = self.device.type == "cuda"
        images = move_to_device(images, self.device, non_blocking)
        targets = move_to_device(targets, self.device, non_blocking)
        if self.config.channels_last and isinstance(images, torch.Tensor) and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        amp = self.config.amp
        with torch.autocast(self.device.type, dtype=AMP_DTYPES.get(amp), enabled=amp is not None), \
                _named_layout_errors(self.config.channels_last):
            parts = self._loss_parts(net(images), targets, images)
        loss = torch.stack(list(parts.values())).sum()
        # The mean over processes is what is logged, and every process sees the same NaN and stops.
        logged = all_reduce_mean(torch.stack([loss.detach(), *parts.values()]).detach(), self.ctx)
        values = dict(zip([TOTAL_COLUMN, *parts], logged.tolist()))
        bad = first_non_finite(values)
        if bad is not None:
            raise NonFiniteLossError(self.progress.iteration + 1, bad, values[bad],
                                     self.last_checkpoint)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return values

    # ---- checkpoints and epochs ---------------------------------------------------------------
    def _checkpoint(self, best: bool) -> None:
        """Every process calls this at the same iteration (the RNG states are gathered)."""
        rng = gather_to_all(capture_rng_state(), self.ctx)
        if self.ctx.is_main:
            payload = {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                       "optimizer": self.optimizer.state_dict(),
                       "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                       "progress": asdict(self.progress), "rng": rng,
                       "world_size": self.ctx.world_size, "config": self.config.to_dict()}
            if best:  # best first: a kill between the two writes then only repeats this epoch
                self.store.save_best(payload)
            self.last_checkpoint = self.store.save(payload, self.progress.iteration)
        self.last_checkpoint = broadcast_from_main(self.last_checkpoint, self.ctx)

    def _end_epoch(self, complete: bool, progress_display: Progress) -> None:
        """Score the epoch (or the final partial one), checkpoint it, and keep the best."""
        p = self.progress
        mean_loss = p.epoch_loss_sum / max(1, p.epoch_loss_count)
        score = -mean_loss
        if self.evaluate_fn is not None:
            score = None
            if self.ctx.is_main:
                self.model.eval()
                score = float(self.evaluate_fn(self.model))
                self.model.train()
            score = broadcast_from_main(score, self.ctx)
        improved = p.best_score is None or score > p.best_score
        if improved:
            p.best_score, p.best_iteration = score, p.iteration
        progress_display.message(f"epoch {p.epoch + 1}/{self.num_epochs}: mean loss {mean_loss:.4g}, "
                                 f"score {score:.4g}{' (best)' if improved else ''}")
        if complete:
            p.epoch, p.batch_in_epoch, p.epoch_loss_sum, p.epoch_loss_count = p.epoch + 1, 0, 0.0, 0
        self._checkpoint(best=improved)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        resume_path = self._resume_path()
        if resume_path is not None:
            self._restore(resume_path)
        net = self.model
        if self.ctx.enabled:
            net = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                          if self.device.type == "cuda" else None)
        log = CsvTrainLog(self.out_dir / LOG_NAME, self.progress.iteration if resume_path else None) \
            if self.ctx.is_main else None
        display = Progress(self.total_iterations, self.progress.iteration, self.ctx.is_main,
                           self.config.log_every)
        left_out = len(self.train_set) % self.global_batch
        if left_out:
            display.message(f"{left_out} of {len(self.train_set)} samples are left out of each epoch "
                            f"(not a whole global batch of {self.global_batch}); the shuffle "
                            f"differs every epoch, so each is left out only now and then")
        if resume_path is not None:
            display.message(f"resumed from {resume_path} at epoch {self.progress.epoch + 1}, "
                            f"iteration {self.progress.iteration}")
            if log is not None and log.dropped_rows:
                display.message(f"{log.path}: cut {log.dropped_rows} row(s) past the checkpoint")
        if self._rng_to_restore is not None:  # last, so nothing above consumes random numbers
            restore_rng_state(self._rng_to_restore)
        try:
            self._train(net, log, display)
        finally:
            display.close()
            if log is not None:
                log.close()
        barrier(self.ctx)
        best = self.store.best_path
        return TrainResult(self.model, self.out_dir / LOG_NAME, best if best.is_file() else None,
                           self.last_checkpoint, self.progress.iteration, self.progress.epoch)

    def _train(self, net: torch.nn.Module, log: CsvTrainLog | None, display: Progress) -> None:
        p, config = self.progress, self.config
        self.model.train()
        while p.iteration < self.total_iterations:
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(p.epoch)
            loader = build_epoch_loader(
                self.train_set, config.batch_size, config.seed, p.epoch, rank=self.ctx.rank,
                world_size=self.ctx.world_size, start_batch=p.batch_in_epoch,
                num_workers=config.num_workers, collate_fn=self.collate_fn,
                pin_memory=self.device.type == "cuda")
            tick = time.perf_counter()
            for images, targets in loader:
                lr = self.optimizer.param_groups[0]["lr"]
                values = self._step(net, images, targets)
                now = time.perf_counter()
                p.iteration, p.batch_in_epoch = p.iteration + 1, p.batch_in_epoch + 1
                p.epoch_loss_sum += values[TOTAL_COLUMN]
                p.epoch_loss_count += 1
                row = {"iteration": p.iteration, "epoch": p.epoch + 1, "lr": lr,
                       "images_per_s": round(self.global_batch / max(now - tick, MIN_STEP_S), 1),
                       **values}
                tick = now
                if log is not None:
                    log.write(row)
                display.update(row, f"epoch {p.epoch + 1}/{self.num_epochs}")
                epoch_done = p.batch_in_epoch == self.iterations_per_epoch
                if epoch_done or p.iteration >= self.total_iterations:
                    break
                if config.ckpt_every and p.iteration % config.ckpt_every == 0:
                    self._checkpoint(best=False)
            self._end_epoch(complete=p.batch_in_epoch == self.iterations_per_epoch,
                            progress_display=display)
