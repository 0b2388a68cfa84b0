"""Per-epoch training checkpoints and exact resume for :func:`~sparsenet.training.fit`.

A training checkpoint is an ordinary model checkpoint (:func:`sparsenet.checkpoint.save_model`)
with a ``train_state`` entry: epoch, step, optimizer and scheduler state, history, config and
each callback's ``state_dict``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint, save_model
from ..errors import CheckpointError
from ..progress import log
from .callbacks import Callback, TrainState
from .config import make_scheduler

__all__ = ["restore_state", "save_state"]


def save_state(
    state: TrainState,
    path: str | os.PathLike[str],
    callbacks: Sequence[Callback],
    metadata: dict[str, Any] | None,
) -> None:
    """Save the model with everything a resumed run needs (atomically, via ``save_model``).

    Parameters
    ----------
    state : the training state after an epoch.
    path : the checkpoint file.
    callbacks : their ``state_dict()`` are stored in order.
    metadata : the caller's metadata; ``history`` and ``config`` are added to it.
    """
    train_state = {
        "epoch": state.epoch,
        "step": state.step,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "history": state.history,
        "config": asdict(state.config),
        "callbacks": [cb.state_dict() for cb in callbacks],
    }
    meta = {**(metadata or {}), "history": state.history, "config": asdict(state.config)}
    save_model(state.model, path, metadata=meta, train_state=train_state)


def restore_state(
    state: TrainState, path: str | os.PathLike[str], callbacks: Sequence[Callback]
) -> None:
    """Load a training checkpoint into ``state`` (model, optimizer, scheduler, counters).

    A finished run given more epochs starts a new schedule segment (see :func:`_extend`).

    Raises
    ------
    CheckpointError
        The file has no training state, or its model or optimizer state does not fit.
    """
    ckpt = load_checkpoint(path)
    ts = ckpt.get("train_state")
    if ts is None:
        raise CheckpointError(f"{path}: has no training state to resume from")
    try:
        state.model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise CheckpointError(
            f"{path}: cannot resume, model does not match ({_mismatch(state.model, ckpt)})"
        ) from None
    try:
        state.optimizer.load_state_dict(ts["optimizer"])
        state.scheduler.load_state_dict(ts["scheduler"])
        state.epoch, state.step = int(ts["epoch"]), int(ts["step"])
        state.history = list(ts["history"])
    except (ValueError, KeyError, TypeError) as exc:
        was = (ts.get("config") or {}).get("optimizer") if isinstance(ts, dict) else None
        raise CheckpointError(
            f"{path}: cannot resume, its optimizer state ({was or 'unknown'}) does not fit "
            f"--optimizer {state.config.optimizer} ({type(exc).__name__})"
        ) from None
    for cb, cb_state in zip(callbacks, ts.get("callbacks", []), strict=False):
        cb.load_state_dict(cb_state)
    done_epochs = (ts.get("config") or {}).get("epochs")
    if isinstance(done_epochs, int) and state.epoch >= done_epochs \
            and state.config.epochs > state.epoch:
        _extend(state)


def _extend(state: TrainState) -> None:
    """A finished run given more epochs: the extra epochs are a new schedule segment.

    The weights and the optimizer's running state (momentum, Adam moments) carry on; the
    learning rate restarts at ``config.lr`` and the schedule (cosine, step) runs over the
    added epochs only, ``config.epochs - epochs done``. An interrupted extension resumes
    inside its segment like any other run (the segment's scheduler is in the checkpoint).
    """
    cfg = state.config
    for group in state.optimizer.param_groups:
        group["lr"] = cfg.lr
        group["initial_lr"] = cfg.lr
    segment = cfg.replace(epochs=cfg.epochs - state.epoch)
    state.scheduler = make_scheduler(state.optimizer, segment)
    log(f"extending a finished {state.epoch}-epoch run to {cfg.epochs} epochs: lr {cfg.lr} "
        f"with a fresh {cfg.schedule} schedule over the {segment.epochs} new epoch(s)", cfg.quiet)


def _mismatch(model: nn.Module, ckpt: dict[str, Any]) -> str:
    """One line on how a checkpoint's state dict differs from ``model``'s."""
    have, got = model.state_dict(), ckpt.get("state_dict") or {}
    missing = [k for k in have if k not in got]
    extra = [k for k in got if k not in have]
    shapes = [k for k in have if k in got and hasattr(got[k], "shape")
              and tuple(got[k].shape) != tuple(have[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing tensor(s), e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of other shape(s), e.g. {k} "
                     f"{tuple(got[k].shape)} vs {tuple(have[k].shape)}")
    return "; ".join(parts) or "the tensors differ"
