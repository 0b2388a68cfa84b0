"""Per-layer sensitivity: accuracy against sparsity, one layer at a time, no retraining.

Han et al. (2015), Figure 6: prune a single layer to each sparsity in a grid, evaluate,
restore, move on. The curves show which layers tolerate pruning (fc1 of LeNet-300 to
~95%) and which do not (the first convolution).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write_bytes, write_json
from ..progress import progress
from ..training.scoring import sharded_evaluate as evaluate
from .base import Calibrated
from .criteria import Criterion, make_criterion
from .mask import resolve_targets
from .oneshot import PruneSpec, select_masks

__all__ = ["sensitivity", "plot_sensitivity", "write_sensitivity", "DEFAULT_GRID"]

DEFAULT_GRID = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


@torch.no_grad()
def sensitivity(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    method: str | Criterion = "magnitude",
    sparsities: tuple[float, ...] | list[float] = DEFAULT_GRID,
    layers: list[str] | None = None,
    score_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    quiet: bool = True,
    seed: int = 0,
    **obd: Any,
) -> dict[str, Any]:
    """Accuracy and loss on ``data`` with each layer alone pruned to each sparsity.

    Parameters
    ----------
    model : left unchanged (weights are restored after every evaluation).
    data : ``(x, y)`` evaluated at every point (a validation or test set).
    method : criterion ranking the weights within the layer.
    sparsities : the grid, fractions in [0, 1].
    layers : names, groups or globs (default: every compressible tensor, :mod:`sparsenet.layers`).
    score_data : data for OBD's Hessian and the calibrated criteria (default ``data``).
        SparseGPT and OBS rewrite the kept weights, so each point prunes (and
        reconstructs) that layer alone in a copy of the model.

    Under ``torch.distributed`` every rank passes the same data; each evaluates its shard
    and the sums are reduced (accuracies exact, losses to float rounding), and OBD's
    Hessian is sharded likewise, so every rank returns the single-process result.

    Returns
    -------
    dict with ``method``, ``sparsities``, ``dense`` (``accuracy``, ``loss``) and ``layers``:
    ``{name: {"size": n, "accuracy": [...], "loss": [...]}}`` along the grid.
    """
    targets = resolve_targets(model, layers)
    for s in sparsities:
        PruneSpec(sparsity=s)  # validates each grid point
    crit = make_criterion(method, data=score_data or data, seed=seed, **obd)
    dense = evaluate(model, data)
    result: dict[str, Any] = {
        "method": crit.name,
        "sparsities": [float(s) for s in sparsities],
        "dense": {"accuracy": dense["accuracy"], "loss": dense["loss"]},
        "layers": {},
    }
    if isinstance(crit, Calibrated) and type(crit).scores is Criterion.scores:
        return _reconstructing(model, data, crit, sparsities, targets, result, quiet)
    with torch.enable_grad():
        scores = crit.scores(model, targets)
    points = [(t, sc, s) for t, sc in zip(targets, scores, strict=True) for s in sparsities]
    for t, sc, s in progress(points, desc="sensitivity", quiet=quiet):
        row = result["layers"].setdefault(t.name, {"size": t.value.numel(), "accuracy": [], "loss": []})
        (keep,) = select_masks([t], [sc], PruneSpec(sparsity=s, scope="layer"))
        param = _raw(t.module, t.tensor)
        saved = param.detach().clone()
        param.mul_(keep.to(param.dtype))
        ev = evaluate(model, data)
        param.copy_(saved)
        row["accuracy"].append(ev["accuracy"])
        row["loss"].append(ev["loss"])
    return result


def _reconstructing(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    crit: Calibrated,
    sparsities: tuple[float, ...] | list[float],
    targets: list[Any],
    result: dict[str, Any],
    quiet: bool,
) -> dict[str, Any]:
    """Sensitivity for a criterion that updates weights: each point on a fresh copy."""
    names = [t.name if t.tensor == "weight" else t.key for t in targets]
    points = [(name, s) for name in names for s in sparsities]
    for name, s in progress(points, desc="sensitivity", quiet=quiet):
        net = copy.deepcopy(model)
        (t,) = resolve_targets(net, [name])
        row = result["layers"].setdefault(t.name, {"size": t.value.numel(), "accuracy": [], "loss": []})
        crit.apply(net, [t], [round(s * t.value.numel())])
        ev = evaluate(net, data)
        row["accuracy"].append(ev["accuracy"])
        row["loss"].append(ev["loss"])
    return result


def _raw(module: nn.Module, tensor: str) -> torch.Tensor:
    """The stored tensor behind ``module.<tensor>`` (``original`` when parametrised)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, tensor):
        return module.parametrizations[tensor].original  # type: ignore[index,union-attr]
    return getattr(module, tensor)


def plot_sensitivity(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """A PNG of accuracy against sparsity, one line per layer (Han's Figure 6)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [100 * s for s in result["sparsities"]]
    for name, row in result["layers"].items():
        ax.plot(xs, [100 * a for a in row["accuracy"]], marker="o", ms=3, label=name)
    ax.axhline(100 * result["dense"]["accuracy"], color="grey", ls=":", lw=1, label="dense")
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"sensitivity of each layer alone ({result['method']}, no retraining)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_sensitivity(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``sensitivity.json`` and ``sensitivity.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    j = write_json(out / "sensitivity.json", result)
    p = plot_sensitivity(result, out / "sensitivity.png")
    return {"json": os.fspath(j), "png": os.fspath(p)}
