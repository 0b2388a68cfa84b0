"""Pruning schedules over :func:`sparsenet.training.fit`: iterative prune → retrain, gradual.

Masks keep pruned weights at zero through training by themselves, so retraining is a
plain ``fit``; the schedules only decide *when* to prune and to *what* sparsity:

- :func:`prune_iterative`: K rounds of prune → retrain with sparsity growing
  geometrically to the target (Han et al., 2015). Retraining uses 1/10 of the training
  learning rate unless told otherwise.
- :class:`GradualPruning`: a :class:`~sparsenet.training.Callback` pruning every
  ``frequency`` steps along Zhu & Gupta's (2017) cubic schedule
  ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n Δt))³``; :func:`prune_gradual` runs it.

Both take a :class:`~sparsenet.prune.schedule_config.PruneSchedule` and return a
:class:`~sparsenet.prune.schedule_config.PruneResult`; the criterion carries its own options.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import bn
from ..errors import SparsenetError
from ..models import arch_of
from ..progress import log
from ..training import Callback, TrainConfig, TrainState, default_config, evaluate, fit
from .criteria import Criterion, make_criterion
from .mask import sparsity_report
from .oneshot import PruneSpec, prune_to
from .patterns import parse_pattern
from .schedule_config import PruneResult, PruneSchedule

__all__ = ["SparsityMonitor", "GradualPruning", "prune_iterative", "prune_gradual", "cubic_sparsity",
           "cubic_progress"]

Data = tuple[torch.Tensor, torch.Tensor]


class SparsityMonitor(Callback):
    """Adds the model's global ``sparsity`` to each epoch's history record."""

    def on_epoch_end(self, state: TrainState) -> None:
        state.metrics["sparsity"] = sparsity_report(state.model)["sparsity"]


def _training_config(model: nn.Module, config: TrainConfig | None) -> TrainConfig:
    if config is not None:
        return config
    arch = arch_of(model)
    return default_config(arch["name"]) if arch else TrainConfig()


def prune_iterative(
    model: nn.Module,
    train: Data,
    method: str | Criterion = "magnitude",
    sparsity: float | None = None,
    per_layer: dict[str, float] | None = None,
    quality: float | None = None,
    *,
    schedule: PruneSchedule | None = None,
    config: TrainConfig | None = None,
    val: Data | None = None,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    seed: int = 0,
) -> PruneResult:
    """Prune → retrain ``schedule.steps`` times, sparsity growing to the target; in place.

    Parameters
    ----------
    model, sparsity, per_layer, quality : as :func:`~sparsenet.prune.prune`.
    train : ``(x, y)`` training data, used to retrain (and as the criterion's data when it
        has none: OBD's Hessian samples, the calibrated criteria's inputs).
    method : a name (built by :func:`~sparsenet.prune.make_criterion` with its defaults) or
        a :class:`Criterion` carrying its options, e.g. ``OBD(samples=5000, form="lm")``.
    schedule : rounds, retraining epochs and learning rate, scope, N:M pattern, BatchNorm
        recalibration (:class:`PruneSchedule`; default ``PruneSchedule()``).
    config : the model's *training* recipe (default: the registry recipe for its
        architecture); retraining copies it with ``epochs=schedule.retrain_epochs`` and the
        schedule's learning rate (``config.lr / 10`` by default).
    val : evaluated after each pruning and each retraining (accuracies in the history).
    callbacks : passed on to every ``fit``.
    seed : the criterion's (``random``), retraining's and BatchNorm recalibration's seed.

    Returns
    -------
    PruneResult
        ``model`` and one record per round (see :class:`PruneResult`).
    """
    sch = schedule or PruneSchedule()
    spec = PruneSpec(sparsity=sparsity, per_layer=dict(per_layer or {}), quality=quality,
                     scope=sch.scope, pattern=sch.pattern)
    crit = make_criterion(method, data=train, seed=seed)
    cfg = sch.retrain_config(_training_config(model, config), sch.retrain_epochs, seed)
    history: list[dict[str, Any]] = []
    for k in range(1, sch.steps + 1):
        prune_to(model, crit, spec.scaled(k / sch.steps))
        rec: dict[str, Any] = {"step": k, "sparsity": sparsity_report(model)["sparsity"]}
        if sch.recalibrate_bn and bn.has_batchnorm(model):
            rec["bn_recalibrated"] = bn.recalibrate_bn(
                model, train, batches=sch.bn_batches, batch_size=cfg.batch_size, seed=seed + k)
        if val is not None:
            rec["pruned_acc"] = evaluate(model, val, device=cfg.device)["accuracy"]
        if sch.retrain_epochs:
            rec["fit"] = fit(model, train, cfg, callbacks=[SparsityMonitor(), *callbacks])
        if val is not None:
            rec["retrained_acc"] = evaluate(model, val, device=cfg.device)["accuracy"]
        log(
            f"round {k}/{sch.steps}: sparsity {rec['sparsity']:.4f}"
            + (f", acc {rec['pruned_acc']:.4f} -> {rec['retrained_acc']:.4f}" if val else ""),
            cfg.quiet,
        )
        history.append(rec)
    return PruneResult(model, history)


def cubic_progress(step: int, begin: int, end: int) -> float:
    """``1 − (1 − (t − t0)/(t_end − t0))³`` clamped to [0, 1]: 0 at ``begin``, 1 from ``end``."""
    frac = min(1.0, max(0.0, (step - begin) / max(end - begin, 1)))
    return 1.0 - (1.0 - frac) ** 3


def cubic_sparsity(step: int, final: float, initial: float, begin: int, end: int) -> float:
    """Zhu & Gupta's ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t_end − t0))³``."""
    return initial + (final - initial) * cubic_progress(step, begin, end)


class GradualPruning(Callback):
    """Prune along the cubic schedule during :func:`~sparsenet.training.fit`.

    Parameters
    ----------
    criterion : the :class:`Criterion` (or its name) scoring weights at each pruning event.
    final_sparsity : ``s_f`` reached at ``end_step``: a fraction, or ``{"fc1": 0.9, ...}``.
    end_step : ``t0 + nΔt``, in optimizer steps.
    initial_sparsity : ``s_i``, applied at ``begin_step``.
    begin_step : ``t0``.
    frequency : ``Δt``, steps between pruning events (the last event is at ``end_step``).
    scope : ``"global"`` or ``"layer"`` ranking for a fraction target.
    pattern : ``"2:4"`` or any N:M, held at every event (sparsity at least ``1 − N/M``).

    ``events`` lists ``(step, sparsity target)`` of each pruning event.
    """

    def __init__(
        self,
        criterion: str | Criterion,
        final_sparsity: float | dict[str, float],
        end_step: int,
        initial_sparsity: float = 0.0,
        begin_step: int = 0,
        frequency: int = 100,
        scope: str = "global",
        pattern: str | None = None,
    ) -> None:
        if not (0 <= begin_step < end_step) or frequency < 1:
            raise SparsenetError(
                f"bad gradual schedule begin_step={begin_step}, end_step={end_step}, "
                f"frequency={frequency}; expected 0 <= begin < end and frequency >= 1"
            )
        self.criterion = make_criterion(criterion) if isinstance(criterion, str) else criterion
        self.final = final_sparsity
        self.initial = initial_sparsity
        self.begin, self.end, self.frequency = begin_step, end_step, frequency
        self.scope = scope
        self.pattern = pattern
        self._spec(0.0), self._spec(1.0)  # validate both ends once, here
        self.events: list[tuple[int, float]] = []

    def _spec(self, phi: float) -> PruneSpec:
        pat = parse_pattern(self.pattern)
        floor = 0.0 if pat is None else pat.min_sparsity  # the pattern holds at every event

        def at(f: float) -> float:
            return max(floor, self.initial + (f - self.initial) * phi)

        if isinstance(self.final, dict):
            return PruneSpec(per_layer={k: at(v) for k, v in self.final.items()}, pattern=self.pattern)
        return PruneSpec(sparsity=at(self.final), scope=self.scope, pattern=self.pattern)

    def _prune_at(self, state: TrainState, t: int) -> None:
        phi = cubic_progress(t, self.begin, self.end)
        spec = self._spec(phi)
        prune_to(state.model, self.criterion, spec)
        self.events.append((t, spec.sparsity if spec.sparsity is not None else phi))

    def on_train_begin(self, state: TrainState) -> None:
        if state.step == self.begin and self.initial > 0:
            self._prune_at(state, 0)

    def on_step_end(self, state: TrainState) -> None:
        t = state.step + 1  # steps completed, this one included
        if self.begin < t <= self.end and ((t - self.begin) % self.frequency == 0 or t == self.end):
            self._prune_at(state, t)

    def on_epoch_end(self, state: TrainState) -> None:
        state.metrics["sparsity"] = sparsity_report(state.model)["sparsity"]

    def state_dict(self) -> dict[str, Any]:
        return {"events": list(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = [tuple(e) for e in state.get("events", [])]  # type: ignore[misc]


def prune_gradual(
    model: nn.Module,
    train: Data,
    method: str | Criterion = "magnitude",
    sparsity: float | dict[str, float] = 0.9,
    *,
    schedule: PruneSchedule | None = None,
    config: TrainConfig | None = None,
    val: Data | None = None,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    seed: int = 0,
) -> PruneResult:
    """Train ``schedule.epochs`` epochs while pruning gradually to ``sparsity``; in place.

    Pruning runs over the first ``schedule.prune_fraction`` of the steps (``frequency``
    defaults to 1/20 of that span), the rest fine-tunes at the final sparsity. The learning
    rate defaults to the training recipe's lr / 10 as for :func:`prune_iterative`; ``method``,
    ``config``, ``val``, ``callbacks`` and ``seed`` are as there. With
    ``schedule.recalibrate_bn``, BatchNorm running statistics are recomputed once training
    ends (the last pruning event happened after most of their updates).

    Returns
    -------
    PruneResult
        ``model``, :func:`~sparsenet.training.fit`'s per-epoch history and the pruning events.
    """
    sch = schedule or PruneSchedule()
    cfg = sch.retrain_config(_training_config(model, config), sch.epochs, seed)
    steps_per_epoch = -(-len(train[0]) // cfg.batch_size)
    end = max(1, int(sch.prune_fraction * sch.epochs * steps_per_epoch))
    crit = make_criterion(method, data=train, seed=seed)
    cb = GradualPruning(
        crit,
        sparsity,
        end_step=end,
        initial_sparsity=sch.initial_sparsity,
        frequency=sch.frequency or max(1, end // 20),
        scope=sch.scope,
        pattern=sch.pattern,
    )
    history = fit(model, train, cfg, callbacks=[cb, *callbacks], val=val)
    if sch.recalibrate_bn and bn.has_batchnorm(model):
        bn.recalibrate_bn(model, train, batch_size=cfg.batch_size, seed=seed)
        if val is not None and history:
            history[-1]["val_acc_recalibrated"] = evaluate(model, val, device=cfg.device)["accuracy"]
    return PruneResult(model, history, list(cb.events))
