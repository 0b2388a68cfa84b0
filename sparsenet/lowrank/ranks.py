"""Rank selection: a fixed rank, per-layer ranks, a spectral-energy fraction or a global budget.

Every rule turns the singular values of each candidate layer's weight matrix into a
:class:`LayerPlan`; :func:`sparsenet.lowrank.factorize` then applies the plan.

Parameter counts include the bias (it is kept either way), so ``params_after`` of a plan is
exactly ``sum(p.numel() for p in layer.parameters())`` after the swap.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..errors import SpecError
from ..layers import compressible_tensors
from .layers import is_lowrank, singular_values, weight_matrix

__all__ = ["LayerPlan", "candidate_layers", "plan_ranks", "energy_rank"]


@dataclass
class LayerPlan:
    """What factorisation does to one layer.

    Attributes
    ----------
    name : the layer's module name (``"fc1"``).
    kind : ``"linear"`` or ``"conv2d"``.
    shape : (m, n) of the weight matrix (Conv2d: (out, in·kh·kw)).
    bias : number of bias entries (kept unchanged).
    singular_values : float64 array (min(m, n),), descending.
    rank : the chosen rank, or ``None`` when the layer stays dense.
    reason : how the rank was chosen, or why the layer stays dense.
    """

    name: str
    kind: str
    shape: tuple[int, int]
    bias: int
    singular_values: np.ndarray = field(repr=False)
    rank: int | None
    reason: str

    @property
    def factorized(self) -> bool:
        return self.rank is not None

    @property
    def params_before(self) -> int:
        m, n = self.shape
        return m * n + self.bias

    @property
    def params_after(self) -> int:
        m, n = self.shape
        return (self.rank * (m + n) if self.rank is not None else m * n) + self.bias

    @property
    def energy_kept(self) -> float:
        """Σ_{i≤r} σ_i² / Σ σ_i² (1.0 for a dense layer)."""
        s2 = self.singular_values**2
        total = float(s2.sum())
        if self.rank is None or total == 0.0:
            return 1.0
        return float(s2[: self.rank].sum()) / total

    @property
    def rel_error(self) -> float:
        """Relative Frobenius error ‖A − A_r‖_F / ‖A‖_F = sqrt(Σ_{i>r} σ_i² / Σ σ_i²)."""
        s2 = self.singular_values**2
        total = float(s2.sum())
        if self.rank is None or total == 0.0:
            return 0.0
        return math.sqrt(float(s2[self.rank :].sum()) / total)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able row (no singular values)."""
        return {
            "layer": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "rank": self.rank,
            "max_rank": int(min(self.shape)),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "rel_frobenius_error": self.rel_error,
            "energy_kept": self.energy_kept,
            "reason": self.reason,
        }


def candidate_layers(
    model: nn.Module, layers: list[str] | None = None
) -> dict[str, nn.Linear | nn.Conv2d]:
    """The ``nn.Linear`` and ``nn.Conv2d`` layers to consider, by name, in model order.

    They are the compressible tensors (:mod:`sparsenet.layers`) of kind ``fc``/``conv`` on
    those two types: attention projections, embeddings and transposed convolutions are not
    factorised.

    Factors inside an existing low-rank layer and grouped convolutions are skipped when
    ``layers`` is ``None``; a named layer that is not a factorisable layer raises
    :class:`SpecError`.
    """
    inside = [name + "." for name, m in model.named_modules() if is_lowrank(m)]
    found: dict[str, nn.Linear | nn.Conv2d] = {
        t.name: t.module  # type: ignore[misc]
        for t in compressible_tensors(model)
        # fc/conv weights only: an attention out_proj is a Linear its MHA reads directly.
        if t.kind in ("fc", "conv") and t.tensor == "weight"
        and isinstance(t.module, (nn.Linear, nn.Conv2d))
        and not any(t.name.startswith(p) for p in inside)
    }
    if layers is None:
        return {k: v for k, v in found.items() if not (isinstance(v, nn.Conv2d) and v.groups != 1)}
    out: dict[str, nn.Linear | nn.Conv2d] = {}
    for name in layers:
        if name not in found:
            raise SpecError(
                f"no factorisable layer {name!r}; expected one of {sorted(found) or 'none'}"
            )
        layer = found[name]
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise SpecError(
                f"layer {name!r} is a Conv2d with groups={layer.groups}; only groups=1 can be factorised"
            )
        out[name] = layer
    return out


def energy_rank(sv: np.ndarray, energy: float) -> int:
    """Smallest r with Σ_{i≤r} σ_i² ≥ ``energy`` · Σ σ_i² (at least 1)."""
    s2 = np.asarray(sv, dtype=np.float64) ** 2
    total = float(s2.sum())
    if total == 0.0:
        return 1
    cum = np.cumsum(s2) / total
    # Tolerance so energy=1.0 selects the last non-zero σ despite rounding in the cumsum.
    return min(int(np.searchsorted(cum, energy - 1e-12)) + 1, len(s2))


def _fraction(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"bad {what} {value!r}; expected a number in (0, 1]") from None
    if not (0.0 < v <= 1.0):
        raise SpecError(f"bad {what} {value!r}; expected a number in (0, 1]")
    return v


def _int_rank(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError(f"bad rank {value!r} for {name}; expected an integer >= 1")
    return int(value)


def plan_ranks(
    model: nn.Module,
    rank: int | dict[str, int] | None = None,
    energy: float | None = None,
    budget: float | None = None,
    layers: list[str] | None = None,
    force: bool = False,
    budget_error: str = "absolute",
) -> list[LayerPlan]:
    """Choose a rank for each candidate layer. Exactly one of ``rank``, ``energy``, ``budget``.

    Parameters
    ----------
    model : the network (not modified).
    rank : an int for every candidate layer (capped at min(m, n)), or ``{"fc1": 32, ...}``
        for the named layers only (each must be in 1..min(m, n)).
    energy : keep the smallest rank whose Σσ² is at least this fraction of the layer's Σσ².
    budget : the factorised layers may hold at most this fraction of the candidate layers'
        parameters (weights + biases). Ranks are allocated greedily by error removed per
        parameter spent (see :func:`_allocate_budget`); a layer whose best choice is its dense
        form stays dense.
    layers : restrict to these layer names (default: every Linear and groups=1 Conv2d).
    force : factorise even when r·(m + n) ≥ m·n (otherwise such a layer stays dense).
    budget_error : the error a rank step removes, for ``budget``: ``"absolute"`` (σ_i², the
        default) or ``"relative"`` (σ_i² / ‖A‖_F², every layer's relative error weighs the
        same). On the LeNets after fine-tuning, absolute was as good or better (small layers
        have large relative tails and soak up the budget under "relative"); see
        docs/lowrank.md.

    Returns
    -------
    list of :class:`LayerPlan`, one per candidate layer, in model order.
    """
    given = [
        k for k, v in (("rank", rank), ("energy", energy), ("budget", budget)) if v is not None
    ]
    if len(given) != 1:
        raise SpecError(
            f"give exactly one of rank, energy or budget (got {', '.join(given) or 'none'})"
        )
    if isinstance(rank, dict):
        if layers is not None:
            raise SpecError("per-layer ranks name their layers; do not also pass layers")
        layers = list(rank)
    cands = candidate_layers(model, layers)
    if not cands:
        raise SpecError("the model has no Linear or Conv2d layer to factorise")
    plans: list[LayerPlan] = []
    for name, layer in cands.items():
        mat = weight_matrix(layer)
        bias = getattr(layer, "bias", None)
        plans.append(
            LayerPlan(
                name=name,
                kind="linear" if isinstance(layer, nn.Linear) else "conv2d",
                shape=(int(mat.shape[0]), int(mat.shape[1])),
                bias=0 if bias is None else int(bias.numel()),
                singular_values=singular_values(mat).numpy(),
                rank=None,
                reason="",
            )
        )
    if budget is not None:
        _allocate_budget(plans, _fraction(budget, "budget"), budget_error)
        return plans
    if energy is not None:
        e = _fraction(energy, "energy")
    for p in plans:
        max_rank = min(p.shape)
        if isinstance(rank, dict):
            r = _int_rank(rank[p.name], p.name)
            if r > max_rank:
                raise SpecError(
                    f"bad rank {r} for {p.name}: its {p.shape[0]}×{p.shape[1]} weight has rank <= {max_rank}"
                )
            p.rank, p.reason = r, f"rank {r}"
        elif rank is not None:
            r = _int_rank(rank, "every layer")
            p.rank, p.reason = min(r, max_rank), f"rank {r}"
        else:
            p.rank = energy_rank(p.singular_values, e)
            p.reason = f"energy {e:g}"
        m, n = p.shape
        if not force and p.rank * (m + n) >= m * n:
            p.reason = f"dense: rank {p.rank} stores {p.rank * (m + n)} >= {m * n} weights"
            p.rank = None
    return plans


def _allocate_budget(plans: list[LayerPlan], budget: float, metric: str) -> None:
    """Greedy allocation of ranks under a global parameter budget (in place).

    Every factorisable layer starts at rank 1. Each move either raises one layer's rank by
    one (costs m + n weights, removes σ_{r+1}² of squared error) or, once another rank step
    would no longer save weights, turns the layer back to dense (costs m·n − r·(m + n),
    removes the whole tail). The move with the largest error removed per parameter spent is
    taken while it fits. Because a layer's σ² decrease, each layer's rank steps have
    decreasing gains, which is where greedy is optimal for the fractional relaxation.
    Hand-written: no library solves this small knapsack with this cost structure.
    """
    if metric not in ("relative", "absolute"):
        raise SpecError(f"bad budget_error {metric!r}; expected 'relative' or 'absolute'")
    total_before = sum(p.params_before for p in plans)
    allowed = budget * total_before
    spent = 0
    heap: list[tuple[float, int, int, str]] = []  # (−gain/cost, order, cost, move)
    gains: list[np.ndarray] = []
    for p in plans:
        m, n = p.shape
        s2 = p.singular_values**2
        norm = float(s2.sum()) if metric == "relative" else 1.0
        gains.append(s2 / norm if norm > 0 else np.zeros_like(s2))
        if m + n < m * n:
            p.rank, p.reason = 1, f"budget {budget:g}"
            spent += (m + n) + p.bias
        else:
            p.reason = "dense: even rank 1 does not save weights"
            spent += m * n + p.bias
    if spent > allowed:
        raise SpecError(
            f"budget {budget:g} too small: rank 1 in every layer already needs {spent} of "
            f"{total_before} parameters (> {allowed:.0f}); expected a budget >= {spent / total_before:.4f}"
        )

    def push(i: int) -> None:
        p = plans[i]
        if p.rank is None:
            return
        m, n, r = p.shape[0], p.shape[1], p.rank
        if (r + 1) * (m + n) < m * n and r < min(m, n):
            gain, cost, move = float(gains[i][r]), m + n, "inc"
        else:
            gain, cost, move = float(gains[i][r:].sum()), m * n - r * (m + n), "dense"
        if gain > 0:
            heapq.heappush(heap, (-gain / cost, i, cost, move))

    for i in range(len(plans)):
        push(i)
    while heap:
        _, i, cost, move = heapq.heappop(heap)
        if spent + cost > allowed:
            continue  # this layer cannot grow further; others may still fit
        spent += cost
        p = plans[i]
        if move == "inc":
            assert p.rank is not None
            p.rank += 1
            push(i)
        else:
            p.rank, p.reason = None, f"dense: budget {budget:g} keeps it whole"
