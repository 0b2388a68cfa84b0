"""Apply a rank plan to a model (module swap), fine-tune through ``fit``, report per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..training import Callback, TrainConfig, TrainState, fit
from .layers import factorize_layer, is_lowrank
from .ranks import LayerPlan, plan_ranks

__all__ = ["factorize", "finetune", "FactorDrift", "lowrank_ranks", "format_plan", "plan_table"]


def factorize(
    model: nn.Module,
    rank: int | dict[str, int] | None = None,
    energy: float | None = None,
    budget: float | None = None,
    layers: list[str] | None = None,
    force: bool = False,
    plan: list[LayerPlan] | None = None,
    budget_error: str = "absolute",
) -> nn.Module:
    """Replace Linear/Conv2d layers by truncated-SVD low-rank layers, in place.

    Parameters
    ----------
    model : the network; ``model.arch`` and every other module are left as they are.
    rank, energy, budget, layers, force, budget_error : the rank rule, see
        :func:`sparsenet.lowrank.plan_ranks` (exactly one of rank/energy/budget).
    plan : a plan from :func:`plan_ranks` to apply instead of choosing ranks here (use it to
        keep the per-layer table and spectra: ``plan = plan_ranks(model, energy=0.9);
        factorize(model, plan=plan)``).

    Returns
    -------
    The same ``model``: each factorised ``nn.Linear`` is now a :class:`LowRankLinear` and each
    ``nn.Conv2d`` a :class:`LowRankConv2d` with the original bias.
    """
    if plan is None:
        plan = plan_ranks(
            model,
            rank=rank,
            energy=energy,
            budget=budget,
            layers=layers,
            force=force,
            budget_error=budget_error,
        )
    for p in plan:
        if p.rank is None:
            continue
        parent_name, _, attr = p.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, factorize_layer(getattr(parent, attr), p.rank))
    return model


def lowrank_ranks(model: nn.Module) -> dict[str, int]:
    """``{layer name: rank}`` of the low-rank layers in ``model``."""
    return {name: int(m.rank) for name, m in model.named_modules() if is_lowrank(m)}


class FactorDrift(Callback):
    """Records how far fine-tuning moves each factorised layer's product B C.

    ``state.metrics["lowrank_drift"]`` after each epoch is the largest relative Frobenius
    distance ‖B C − (B C)₀‖_F / ‖(B C)₀‖_F over the low-rank layers, (B C)₀ being the
    product when training began.
    """

    def __init__(self) -> None:
        self._start: dict[str, torch.Tensor] = {}

    def on_train_begin(self, state: TrainState) -> None:
        self._start = {
            n: m.dense_weight().clone() for n, m in state.model.named_modules() if is_lowrank(m)
        }

    def on_epoch_end(self, state: TrainState) -> None:
        drift = 0.0
        for n, m in state.model.named_modules():
            if n in self._start:
                w0 = self._start[n]
                d = float(
                    torch.linalg.norm(m.dense_weight() - w0)
                    / torch.linalg.norm(w0).clamp_min(1e-30)
                )
                drift = max(drift, d)
        state.metrics["lowrank_drift"] = drift


def finetune(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    callbacks: Sequence[Callback] = (),
    **fit_kwargs: Any,
) -> list[dict[str, Any]]:
    """Fine-tune a factorised model with :func:`sparsenet.training.fit`.

    The factors are ordinary parameters, so this is ``fit`` plus a :class:`FactorDrift`
    callback; any other callbacks (masks from pruning, penalties) run alongside.

    Returns
    -------
    ``fit``'s per-epoch history (with ``lowrank_drift``).
    """
    return fit(model, train, config, callbacks=[FactorDrift(), *callbacks], val=val, **fit_kwargs)


def plan_table(plan: list[LayerPlan]) -> dict[str, Any]:
    """JSON-able table: one row per layer plus totals over the considered layers."""
    rows = [p.as_dict() for p in plan]
    before = sum(p.params_before for p in plan)
    after = sum(p.params_after for p in plan)
    return {
        "layers": rows,
        "params_before": before,
        "params_after": after,
        "reduction": before / after if after else float("inf"),
    }


def format_plan(plan: list[LayerPlan]) -> str:
    """Fixed-width table: rank, parameters before/after, relative Frobenius error, energy."""
    head = f"{'layer':<10} {'shape':>11} {'rank':>9} {'params':>9} {'after':>9} {'ratio':>6} {'rel.err':>8} {'energy':>7}"
    lines = [head]
    for p in plan:
        rank = f"{p.rank}/{min(p.shape)}" if p.rank is not None else f"-/{min(p.shape)}"
        lines.append(
            f"{p.name:<10} {p.shape[0]:>5}x{p.shape[1]:<5} {rank:>9} {p.params_before:>9,} "
            f"{p.params_after:>9,} {p.params_before / p.params_after:>5.1f}x {p.rel_error:>8.4f} "
            f"{p.energy_kept:>7.2%}"
        )
    t = plan_table(plan)
    lines.append(
        f"{'total':<10} {'':>11} {'':>9} {t['params_before']:>9,} {t['params_after']:>9,} "
        f"{t['reduction']:>5.1f}x"
    )
    return "\n".join(lines)
