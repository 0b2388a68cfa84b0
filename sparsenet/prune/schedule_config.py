"""What a pruning schedule is told (:class:`PruneSchedule`) and what it returns (:class:`PruneResult`).

Both schedules, :func:`~sparsenet.prune.prune_iterative` and
:func:`~sparsenet.prune.prune_gradual`, take one ``PruneSchedule`` instead of a long list of
keywords, and return a ``PruneResult``::

    res = prune_iterative(model, data.train, OBD(form="lm"), sparsity=0.92,
                          schedule=PruneSchedule(steps=4, retrain_epochs=3), val=data.test)
    res.model        # the same module, pruned in place
    res.history      # one record per round (iterative) or per epoch (gradual)

The criterion carries its own options (``OBD(samples=..., form=...)``,
``SparseGPT(calibration=..., damp=...)``); a method given by name is built by
:func:`~sparsenet.prune.make_criterion` with its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import SparsenetError
from ..training import TrainConfig
from .patterns import parse_pattern

__all__ = ["PruneSchedule", "PruneResult", "DEFAULT_LR_FACTOR"]

# Han et al. retrain at a tenth of the training learning rate.
DEFAULT_LR_FACTOR = 0.1
SCOPES = ("global", "layer")


def _int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SparsenetError(f"bad PruneSchedule {name}={value!r}; expected an integer >= {low}")


def _positive(name: str, value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise SparsenetError(f"bad PruneSchedule {name}={value!r}; expected a finite number > 0")


@dataclass(frozen=True)
class PruneSchedule:
    """How a pruning schedule prunes and retrains; every field has a default.

    Parameters
    ----------
    steps : iterative: K rounds; round k prunes to ``1 − (1 − s)^(k/K)`` (quality: ``q·k/K``).
    retrain_epochs : iterative: epochs of :func:`~sparsenet.training.fit` after each round
        (0 = none).
    epochs : gradual: epochs of training while pruning.
    prune_fraction : gradual: pruning runs over this first fraction of the steps; the rest
        fine-tunes at the final sparsity.
    frequency : gradual: optimizer steps between pruning events (default 1/20 of the span).
    initial_sparsity : gradual: Zhu & Gupta's ``s_i``, applied at the first step.
    lr : retraining learning rate as given; exclusive with ``lr_factor``.
    lr_factor : retraining at ``config.lr × lr_factor`` (default 0.1, Han's lr / 10).
    scope : ``"global"`` (one ranking over all layers) or ``"layer"`` for a fraction target.
    pattern : ``"2:4"`` or any N:M, held from the first round / event on.
    recalibrate_bn : recompute BatchNorm running statistics from training batches after
        each pruning round (iterative) or once training ends (gradual).
    bn_batches : iterative: at most this many batches per recalibration.
    """

    steps: int = 3
    retrain_epochs: int = 2
    epochs: int = 4
    prune_fraction: float = 0.75
    frequency: int | None = None
    initial_sparsity: float = 0.0
    lr: float | None = None
    lr_factor: float | None = None
    scope: str = "global"
    pattern: str | None = None
    recalibrate_bn: bool = True
    bn_batches: int = 50

    def __post_init__(self) -> None:
        _int("steps", self.steps, 1)
        _int("retrain_epochs", self.retrain_epochs, 0)
        _int("epochs", self.epochs, 1)
        _int("bn_batches", self.bn_batches, 1)
        if self.frequency is not None:
            _int("frequency", self.frequency, 1)
        if not (isinstance(self.prune_fraction, (int, float)) and 0 < self.prune_fraction <= 1):
            raise SparsenetError(
                f"bad PruneSchedule prune_fraction={self.prune_fraction!r}; expected (0, 1]"
            )
        if not (isinstance(self.initial_sparsity, (int, float))
                and 0 <= self.initial_sparsity < 1):
            raise SparsenetError(
                f"bad PruneSchedule initial_sparsity={self.initial_sparsity!r}; expected [0, 1)"
            )
        if self.lr is not None and self.lr_factor is not None:
            raise SparsenetError(
                f"PruneSchedule has lr={self.lr!r} and lr_factor={self.lr_factor!r}; "
                "expected at most one of them"
            )
        for name in ("lr", "lr_factor"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.scope not in SCOPES:
            raise SparsenetError(f"bad PruneSchedule scope={self.scope!r}; expected one of {SCOPES}")
        parse_pattern(self.pattern)  # SpecError naming a bad pattern

    def retrain_config(self, base: TrainConfig, epochs: int, seed: int) -> TrainConfig:
        """``base`` with ``epochs``, ``seed`` and the retraining learning rate."""
        if self.lr is not None:
            lr = self.lr
        else:
            lr = base.lr * (self.lr_factor if self.lr_factor is not None else DEFAULT_LR_FACTOR)
        return base.replace(epochs=epochs, lr=lr, seed=seed)


@dataclass
class PruneResult:
    """What both pruning schedules return.

    Attributes
    ----------
    model : the pruned module (the one passed in, changed in place).
    history : :func:`~sparsenet.prune.prune_iterative`: one record per round (``step``,
        ``sparsity``, ``pruned_acc``/``retrained_acc`` with ``val``, ``bn_recalibrated``,
        ``fit``: that round's per-epoch history); :func:`~sparsenet.prune.prune_gradual`:
        :func:`~sparsenet.training.fit`'s per-epoch records (``sparsity`` included).
    events : gradual: ``(step, sparsity target)`` of every pruning event; empty otherwise.
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[int, float]] = field(default_factory=list)
