"""Training and evaluation: ``fit`` with callbacks, deterministic seeds and resumable checkpoints.

The extension point is :class:`Callback`. Pruning (re-masking), regularisation (extra loss
terms), weight sharing (centroid fine-tuning) and low-rank fine-tuning plug into the same
loop through it instead of copying the loop::

    class L1(Callback):
        def penalty(self, state):
            return 1e-5 * sum(p.abs().sum() for p in state.model.parameters())

    fit(model, data.train, TrainConfig(epochs=5), callbacks=[L1()], val=data.test)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from . import distributed as dist_
from .checkpoint import load_checkpoint, save_model
from .errors import CheckpointError, SparsenetError
from .progress import log, progress

__all__ = [
    "TrainConfig",
    "TrainState",
    "Callback",
    "fit",
    "evaluate",
    "predict",
    "seed_everything",
    "default_config",
    "loss_function",
    "LOSSES",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("cross_entropy", "mse")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`. Validated on construction.

    Attributes
    ----------
    epochs : number of passes over the training set (>= 0).
    batch_size : mini-batch size.
    lr : initial learning rate.
    optimizer : ``"sgd"`` (with ``momentum``, Nesterov off), ``"adam"`` or ``"adamw"``
        (Adam with decoupled weight decay).
    momentum : SGD momentum.
    weight_decay : decoupled from the penalties of :mod:`sparsenet.regularize`; plain
        optimizer weight decay on every parameter.
    schedule : ``"cosine"`` (to 0 over all epochs), ``"step"`` (× ``gamma`` every
        ``step_size`` epochs) or ``"constant"``.
    seed : seeds shuffling and anything random in callbacks. Equal seeds, equal results.
    quiet : no progress bars and no epoch lines.
    device : ``"cpu"`` or ``"cuda"``.
    loss : ``"cross_entropy"`` or ``"mse"`` (logits against one-hot targets); see
        :func:`loss_function`. A name, so manifests and resume digests can record it.
    label_smoothing : in [0, 1): targets ``(1 − ε)·one_hot + ε/classes``, for either loss.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    quiet: bool = False
    device: str = "cpu"
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 0, "epochs", "an integer >= 0"),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                "batch_size",
                "an integer >= 1",
            ),
            (math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0"),
            (self.optimizer in ("sgd", "adam", "adamw"), "optimizer", "'sgd', 'adam' or 'adamw'"),
            (0 <= self.momentum < 1, "momentum", "in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", "a number >= 0"),
            (
                self.schedule in ("cosine", "step", "constant"),
                "schedule",
                "'cosine', 'step' or 'constant'",
            ),
            (self.step_size >= 1, "step_size", "an integer >= 1"),
            (0 < self.gamma <= 1, "gamma", "in (0, 1]"),
            (self.loss in LOSSES, "loss", " or ".join(repr(x) for x in LOSSES)),
            (0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise SparsenetError(f"bad {name}={getattr(self, name)!r}; expected {expected}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        known = {f.name for f in fields(self)}
        bad = set(changes) - known
        if bad:
            raise SparsenetError(
                f"unknown TrainConfig field(s) {sorted(bad)}; expected some of {sorted(known)}"
            )
        return TrainConfig(**{**asdict(self), **changes})


@dataclass
class TrainState:
    """What callbacks see. Fields are updated in place as training runs."""

    model: nn.Module
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    step: int = 0
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    stop: bool = False


class Callback:
    """Hooks into :func:`fit`. Override what you need; every hook is optional.

    Order within one step: forward → ``penalty`` (summed into the loss) → backward →
    ``on_after_backward`` (gradients present) → optimizer step → ``on_step_end``.
    ``state_dict``/``load_state_dict`` let a resumed run restore callback state.
    """

    def on_train_begin(self, state: TrainState) -> None: ...
    def on_epoch_begin(self, state: TrainState) -> None: ...
    def penalty(self, state: TrainState) -> torch.Tensor | None:
        return None

    def on_after_backward(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's global generator."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loss_function(cfg: TrainConfig) -> LossFn:
    """The loss ``fn(logits (N, C), labels (N,) int64) -> scalar`` that ``cfg.loss`` names."""
    eps = cfg.label_smoothing
    if cfg.loss == "mse":

        def mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
            return nn.functional.mse_loss(logits, target * (1 - eps) + eps / logits.shape[1])

        return mse
    if eps == 0:
        return nn.functional.cross_entropy
    return lambda logits, y: nn.functional.cross_entropy(logits, y, label_smoothing=eps)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1000, device: str = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (N, ...) → (N, classes), in eval mode, batched."""
    was_training = model.training
    model.eval()
    outs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    loss_fn: LossFn | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``.

    Returns
    -------
    dict with ``loss`` (mean cross-entropy unless ``loss_fn``), ``accuracy`` in [0, 1], ``n``.
    """
    if len(x) != len(y):
        raise SparsenetError(f"evaluate: {len(x)} inputs but {len(y)} labels")
    loss_fn = loss_fn or nn.functional.cross_entropy
    logits = predict(model, x, batch_size, device)
    if len(x) == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "n": 0}
    loss = float(loss_fn(logits, y))
    acc = float((logits.argmax(1) == y).double().mean())
    return {"loss": loss, "accuracy": acc, "n": len(x)}


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
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
    callbacks : extension hooks, see :class:`Callback`.
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
    x_train, y_train = train
    if len(x_train) != len(y_train):
        raise SparsenetError(f"fit: {len(x_train)} inputs but {len(y_train)} labels")
    if len(x_train) == 0:
        raise SparsenetError("fit: the training set is empty")
    loss_fn = loss_fn or loss_function(cfg)
    model.to(cfg.device)
    optimizer = _make_optimizer(model, cfg)
    scheduler = _make_scheduler(optimizer, cfg)
    state = TrainState(model=model, config=cfg, optimizer=optimizer, scheduler=scheduler)

    if resume and checkpoint is not None and Path(checkpoint).exists():
        _restore(state, checkpoint, callbacks)
        log(f"resumed from {checkpoint} after epoch {state.epoch}", cfg.quiet)

    # Every callback whose on_train_begin ran gets on_train_end, also when an epoch raises or
    # is interrupted (Ctrl-C): an ActivationPenalty's forward hooks must not outlive the fit.
    started: list[Callback] = []
    failure: BaseException | None = None
    try:
        for cb in callbacks:
            started.append(cb)
            cb.on_train_begin(state)
        n = len(x_train)
        world, my_rank = dist_.world_size(), dist_.rank()
        if cfg.batch_size % world:
            raise SparsenetError(
                f"batch_size={cfg.batch_size} is not divisible by the {world} processes; "
                "expected a multiple of the world size (it is the global batch)"
            )
        # DistributedSampler also in one process, so 1 process with batch B and W processes with
        # B/W each see the same global batches (rank r takes every W-th index of the permutation).
        sampler: DistributedSampler[int] = DistributedSampler(
            cast(Any, range(n)),
            num_replicas=world,
            rank=my_rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=False,
        )
        local_batch = cfg.batch_size // world
        forward: nn.Module = dist_.wrap_ddp(model)  # DDP when world > 1
        while state.epoch < cfg.epochs and not state.stop:
            epoch = state.epoch
            # Seeds derive from (seed, epoch, rank) alone, so a resumed run replays the same batches.
            torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + my_rank)
            sampler.set_epoch(epoch)
            perm = torch.tensor(list(iter(sampler)), dtype=torch.long)
            state.metrics = {}
            for cb in callbacks:
                cb.on_epoch_begin(state)
            model.train()
            t0 = time.perf_counter()
            totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, samples
            starts = range(0, len(perm), local_batch)
            quiet = cfg.quiet or not dist_.is_main()
            for start in progress(starts, desc=f"epoch {epoch + 1}/{cfg.epochs}", quiet=quiet):
                idx = perm[start : start + local_batch]
                x = x_train[idx].to(cfg.device)
                y = y_train[idx].to(cfg.device)
                state.x, state.y = x, y
                logits = forward(x)
                loss = loss_fn(logits, y)
                state.logits, state.loss = logits, loss
                objective = loss
                for cb in callbacks:
                    extra = cb.penalty(state)
                    if extra is not None:
                        objective = objective + extra
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                for cb in callbacks:
                    cb.on_after_backward(state)
                optimizer.step()
                for cb in callbacks:
                    cb.on_step_end(state)
                state.step += 1
                totals += torch.tensor(
                    [
                        float(loss.detach()) * len(idx),
                        float((logits.detach().argmax(1) == y).sum()),
                        len(idx),
                    ],
                    dtype=torch.float64,
                )
            dist_.all_reduce_sum(totals)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(totals[0] / totals[2]),
                "train_acc": float(totals[1] / totals[2]),
            }
            state.scheduler.step()  # _restore may start a new segment (see _extend)
            if val is not None:
                ev = evaluate(model, val[0], val[1], loss_fn=loss_fn, device=cfg.device)
                record["val_loss"], record["val_acc"] = ev["loss"], ev["accuracy"]
            record["seconds"] = time.perf_counter() - t0
            state.epoch = epoch + 1
            for cb in callbacks:
                cb.on_epoch_end(state)
            record.update(state.metrics)
            state.history.append(record)
            if dist_.debug_enabled():
                dist_.check_replicas_equal(model, f"epoch {epoch + 1}")
            msg = f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}"
            if val is not None:
                msg += f" val_acc {record['val_acc']:.4f}"
            log(msg + f" ({record['seconds']:.1f}s)", quiet)
            if checkpoint is not None:
                if dist_.is_main():
                    _save(state, checkpoint, callbacks, metadata)
                dist_.barrier()
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _end_callbacks(started, state, failure)
    model.eval()
    return state.history


def _end_callbacks(
    callbacks: Sequence[Callback], state: TrainState, failure: BaseException | None
) -> None:
    """``on_train_end`` of every callback, each even if an earlier one raises.

    With a fit that failed (``failure``), an error of ``on_train_end`` is attached to that
    exception as a note instead of replacing it; otherwise the first such error is raised
    once all callbacks have ended.
    """
    first: BaseException | None = None
    for cb in callbacks:
        try:
            cb.on_train_end(state)
        except Exception as exc:
            if failure is not None:
                if sys.version_info >= (3, 11):
                    failure.add_note(
                        f"on_train_end of {cb!r} also failed: {type(exc).__name__}: {exc}"
                    )
            elif first is None:
                first = exc
    if first is not None:
        raise first


def _save(
    state: TrainState,
    path: str | os.PathLike[str],
    callbacks: Sequence[Callback],
    metadata: dict[str, Any] | None,
) -> None:
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


def _restore(
    state: TrainState, path: str | os.PathLike[str], callbacks: Sequence[Callback]
) -> None:
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
    state.scheduler = _make_scheduler(state.optimizer, segment)
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


# Default recipes per (model, data set): what `sparsenet train` uses unless told otherwise.
# Measured on this project's 2-core machine; see README's baseline table.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet300": {
        "epochs": 20,
        "batch_size": 128,
        "lr": 0.05,
        "optimizer": "sgd",
        "momentum": 0.9,
        "schedule": "cosine",
    },
    "lenet5": {
        "epochs": 12,
        "batch_size": 128,
        "lr": 0.02,
        "optimizer": "sgd",
        "momentum": 0.9,
        "schedule": "cosine",
    },
    "resnet": {
        "epochs": 8,
        "batch_size": 128,
        "lr": 0.1,
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
    },
    "vit": {
        "epochs": 10,
        "batch_size": 128,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 0.05,
        "schedule": "cosine",
    },
}


def default_config(model_name: str, data_name: str = "fashion-mnist") -> TrainConfig:
    """The default :class:`TrainConfig` for a registered model (and data set)."""
    base = dict(_DEFAULTS.get(model_name, {}))
    if data_name == "digits":
        base["epochs"] = min(base.get("epochs", 10), 10)
    return TrainConfig(**base)
