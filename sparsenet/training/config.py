"""The hyper-parameters of :func:`~sparsenet.training.fit`, what they build, and per-model defaults.

:class:`TrainConfig` is validated on construction; :func:`loss_function`,
:func:`make_optimizer` and :func:`make_scheduler` turn it into the torch objects ``fit``
uses; :func:`default_config` is the recipe ``sparsenet train`` uses for a registered model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError

__all__ = [
    "LOSSES",
    "LossFn",
    "TrainConfig",
    "default_config",
    "loss_function",
    "make_optimizer",
    "make_scheduler",
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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names, over the parameters that require gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule ``cfg.schedule`` names, over ``cfg.epochs``."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


# Default recipes per registered model: what `sparsenet train` uses unless told otherwise. They
# are keyed by model only; the data set changes one thing (see default_config). Measured on
# this project's 2-core machine; see README's baseline table.
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
    """The default :class:`TrainConfig` for a registered model.

    Parameters
    ----------
    model_name : a registry name (``"lenet300"``, ``"lenet5"``, ``"resnet"``, ``"vit"``);
        any other name gets ``TrainConfig()``'s defaults.
    data_name : the data set; the recipes are per model, and the only per-data-set change
        is that the small ``"digits"`` set trains for at most 10 epochs.

    Returns
    -------
    TrainConfig
    """
    base = dict(_DEFAULTS.get(model_name, {}))
    if data_name == "digits":
        base["epochs"] = min(base.get("epochs", 10), 10)
    return TrainConfig(**base)
