"""Which samples a training run sees, in which order, on which process: resumable and sharded.

Each epoch shuffles the dataset with an RNG derived from (seed, epoch) alone and cuts the order into
global batches of ``batch_size x world_size`` samples (the incomplete tail is left out that epoch
and, reshuffled, seen in others). Process ``rank`` takes samples ``rank, rank + W, ...`` of each global
batch, so the union over processes of one step's batches is the same set of samples whatever the
process count: with a per-sample mean loss, N processes and 1 process take the same steps.
Resuming mid-epoch starts the same order at batch ``start_batch``.

Items must not depend on a DataLoader worker's RNG (which worker loads which batch changes with the
worker count and on resume); datasets derive their augmentation RNG from (seed, epoch, index).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def _derived_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (numpy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class ShardedBatchSampler(Sampler[list[int]]):
    """Index lists of one process's batches for one epoch, from batch ``start_batch`` on.

    dataset_size: samples in the dataset; batch_size: samples per process per batch.
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1, start_batch: int = 0) -> None:
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = dataset_size // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"the dataset has {dataset_size} samples, fewer than one global batch "
                             f"({batch_size} per process x {world_size} processes)")
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self.dataset_size, self.seed, self.epoch = dataset_size, seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def epoch_order(self) -> np.ndarray:
        """The epoch's shuffled sample indices [dataset_size], the same on every process."""
        return np.random.default_rng(_derived_seed(self.seed, self.epoch)).permutation(self.dataset_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order()
        for b in range(self.start_batch, self.batches_per_epoch):
            block = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield block[self.rank::self.world_size].tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch


def build_epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, *,
                       rank: int = 0, world_size: int = 1, start_batch: int = 0,
                       num_workers: int = 0, collate_fn: Callable | None = None,
                       pin_memory: bool = False) -> DataLoader:
    """DataLoader over this process's batches of ``epoch`` from ``start_batch`` on.

    Its generator (which seeds the workers) is derived from (seed, epoch, rank) so that building
    a loader never draws from the global torch RNG, which the model's dropout uses.
    """
    sampler = ShardedBatchSampler(len(dataset), batch_size, seed, epoch, rank, world_size,
                                  start_batch)
    generator = torch.Generator().manual_seed(_derived_seed(seed, epoch, rank))
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_fn, pin_memory=pin_memory, generator=generator)


def move_to_device(obj, device: torch.device, non_blocking: bool = False):
    """``obj`` with every tensor inside (nested lists, tuples, dicts) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [move_to_device(v, device, non_blocking) for v in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)  # namedtuple
    return obj
