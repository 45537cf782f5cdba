"""The training engine every homework shares; it knows nothing about faces or detectors.

    train.py        the loop: ``fit(model, criterion, train_set, config) -> TrainResult``
    config.py       ``TrainConfig`` and the shared training flags of every CLI (``add_train_args``)
    batches.py      resumable, sharded batch order (``ShardedBatchSampler``, ``build_epoch_loader``)
    log.py          the CSV log (a row per iteration) and the progress display
    optim.py        optimizer and per-iteration lr schedule (step, cosine, or the caller's)
    checkpoint.py   atomic checkpoints, last K plus best, resume loading, ``load_model_weights``
    rng_state.py    seeding, and every RNG's state as checkpoint-safe values
    distributed.py  torchrun / DistributedDataParallel plumbing (process group, collectives)
    loss_parts.py   the criterion's contract: named loss parts, and the non-finite loss guard

Nothing is re-exported here: import from the module, e.g. ``from utils.training.train import fit``.
"""
