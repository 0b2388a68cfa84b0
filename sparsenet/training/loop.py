"""The training loop :func:`fit` (scoring is in :mod:`sparsenet.training.scoring`).

One epoch: seed from (seed, epoch, rank) → the sampler's permutation → ``on_epoch_begin`` →
the steps (forward → Σ ``penalty`` → backward → ``on_after_backward`` → optimizer step →
``on_step_end``) → the epoch record (scheduler step, validation, ``on_epoch_end``) → the
checkpoint. See :mod:`sparsenet.training.callbacks` for the hooks and
:mod:`sparsenet.training.resume` for the checkpoints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from .. import distributed as dist_
from ..errors import SparsenetError
from ..progress import log, progress
from .callbacks import Callback, TrainState, end_callbacks
from .config import LossFn, TrainConfig, loss_function, make_optimizer, make_scheduler
from .resume import restore_state, save_state
from .scoring import evaluate

__all__ = ["fit", "seed_everything"]

Pairs = tuple[torch.Tensor, torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's global generator."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    train: Pairs,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    val: Pairs | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    loss_fn: LossFn | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with mini-batch SGD/Adam and return the per-epoch history.

    Parameters
    ----------
    model : the network; its parametrisations (masks, codebooks...) train as usual.
    train : ``(x, y)`` with x of shape (N, ...) and y (N,) int64.
    config : hyper-parameters; defaults to ``TrainConfig()``.
    callbacks : extension hooks, see :class:`Callback`. Every callback whose
        ``on_train_begin`` ran gets ``on_train_end``, also when training raises or is
        interrupted.
    val : optional ``(x, y)`` evaluated after every epoch.
    checkpoint : if given, the model, optimizer, scheduler and history are saved there
        atomically after every epoch (a loadable model checkpoint with ``train_state``).
    resume : continue from ``checkpoint`` if it exists; a finished run returns at once.
    loss_fn : defaults to ``loss_function(config)`` (``config.loss``).
    metadata : stored in the checkpoint's ``metadata``.

    Returns
    -------
    list of dicts, one per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_acc``,
    ``val_loss``/``val_acc`` (when ``val``), ``seconds`` and any callback ``metrics``.
    """
    cfg = config or TrainConfig()
    _check_train_set(train)
    loss_fn = loss_fn or loss_function(cfg)
    state = _new_state(model, cfg)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        restore_state(state, checkpoint, callbacks)
        log(f"resumed from {checkpoint} after epoch {state.epoch}", cfg.quiet)

    # Every callback whose on_train_begin ran gets on_train_end, also when an epoch raises or
    # is interrupted (Ctrl-C): an ActivationPenalty's forward hooks must not outlive the fit.
    started: list[Callback] = []
    failure: BaseException | None = None
    try:
        for cb in callbacks:
            started.append(cb)
            cb.on_train_begin(state)
        run = _prepare_run(state, train, callbacks, loss_fn, val)
        while state.epoch < cfg.epochs and not state.stop:
            _run_epoch(state, run)
            if checkpoint is not None:
                if dist_.is_main():
                    save_state(state, checkpoint, callbacks, metadata)
                dist_.barrier()
    except BaseException as exc:
        failure = exc
        raise
    finally:
        end_callbacks(started, state, failure)
    model.eval()
    return state.history


@dataclass
class _Run:
    """What every epoch of one :func:`fit` uses besides the :class:`TrainState`."""

    x: torch.Tensor
    y: torch.Tensor
    val: Pairs | None
    forward: nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    callbacks: Sequence[Callback]
    sampler: DistributedSampler[int]
    local_batch: int
    rank: int
    quiet: bool


def _check_train_set(train: Pairs) -> None:
    x_train, y_train = train
    if len(x_train) != len(y_train):
        raise SparsenetError(f"fit: {len(x_train)} inputs but {len(y_train)} labels")
    if len(x_train) == 0:
        raise SparsenetError("fit: the training set is empty")


def _new_state(model: nn.Module, cfg: TrainConfig) -> TrainState:
    """Move ``model`` to the device and build its optimizer and schedule."""
    model.to(cfg.device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    return TrainState(model=model, config=cfg, optimizer=optimizer, scheduler=scheduler)


def _prepare_run(
    state: TrainState,
    train: Pairs,
    callbacks: Sequence[Callback],
    loss_fn: LossFn,
    val: Pairs | None,
) -> _Run:
    """The sampler, per-rank batch size and (DDP) forward module of this process."""
    cfg = state.config
    x_train, y_train = train
    world, my_rank = dist_.world_size(), dist_.rank()
    if cfg.batch_size % world:
        raise SparsenetError(
            f"batch_size={cfg.batch_size} is not divisible by the {world} processes; "
            "expected a multiple of the world size (it is the global batch)"
        )
    # DistributedSampler also in one process, so 1 process with batch B and W processes with
    # B/W each see the same global batches (rank r takes every W-th index of the permutation).
    sampler: DistributedSampler[int] = DistributedSampler(
        cast(Any, range(len(x_train))),
        num_replicas=world,
        rank=my_rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=False,
    )
    return _Run(
        x=x_train,
        y=y_train,
        val=val,
        forward=dist_.wrap_ddp(state.model),  # DDP when world > 1
        optimizer=state.optimizer,
        loss_fn=loss_fn,
        callbacks=callbacks,
        sampler=sampler,
        local_batch=cfg.batch_size // world,
        rank=my_rank,
        quiet=cfg.quiet or not dist_.is_main(),
    )


def _run_epoch(state: TrainState, run: _Run) -> None:
    """One pass over the training set, then the epoch's record in ``state.history``."""
    cfg, epoch = state.config, state.epoch
    # Seeds derive from (seed, epoch, rank) alone, so a resumed run replays the same batches.
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + run.rank)
    run.sampler.set_epoch(epoch)
    perm = torch.tensor(list(iter(run.sampler)), dtype=torch.long)
    state.metrics = {}
    for cb in run.callbacks:
        cb.on_epoch_begin(state)
    state.model.train()
    t0 = time.perf_counter()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, samples
    starts = range(0, len(perm), run.local_batch)
    for start in progress(starts, desc=f"epoch {epoch + 1}/{cfg.epochs}", quiet=run.quiet):
        totals += _train_step(state, run, perm[start : start + run.local_batch])
    _end_epoch(state, run, totals, t0)


def _train_step(state: TrainState, run: _Run, idx: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the samples ``idx``; returns (loss sum, correct, samples)."""
    device = state.config.device
    x = run.x[idx].to(device)
    y = run.y[idx].to(device)
    state.x, state.y = x, y
    logits = run.forward(x)
    loss = run.loss_fn(logits, y)
    state.logits, state.loss = logits, loss
    objective = loss
    for cb in run.callbacks:
        extra = cb.penalty(state)
        if extra is not None:
            objective = objective + extra
    run.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    for cb in run.callbacks:
        cb.on_after_backward(state)
    run.optimizer.step()
    for cb in run.callbacks:
        cb.on_step_end(state)
    state.step += 1
    return torch.tensor(
        [
            float(loss.detach()) * len(idx),
            float((logits.detach().argmax(1) == y).sum()),
            len(idx),
        ],
        dtype=torch.float64,
    )


def _end_epoch(state: TrainState, run: _Run, totals: torch.Tensor, t0: float) -> None:
    """Sum over ranks, step the schedule, validate, ``on_epoch_end``, record and log."""
    cfg, epoch = state.config, state.epoch
    dist_.all_reduce_sum(totals)
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": float(totals[0] / totals[2]),
        "train_acc": float(totals[1] / totals[2]),
    }
    state.scheduler.step()  # restore_state may start a new segment (see resume._extend)
    if run.val is not None:
        ev = evaluate(state.model, run.val, loss_fn=run.loss_fn, device=cfg.device)
        record["val_loss"], record["val_acc"] = ev["loss"], ev["accuracy"]
    record["seconds"] = time.perf_counter() - t0
    state.epoch = epoch + 1
    for cb in run.callbacks:
        cb.on_epoch_end(state)
    record.update(state.metrics)
    state.history.append(record)
    if dist_.debug_enabled():
        dist_.check_replicas_equal(state.model, f"epoch {epoch + 1}")
    msg = f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}"
    if run.val is not None:
        msg += f" val_acc {record['val_acc']:.4f}"
    log(msg + f" ({record['seconds']:.1f}s)", run.quiet)
