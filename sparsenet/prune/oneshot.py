"""One-shot pruning: score, pick the lowest, mask. The thin function over a criterion.

Targets come in three forms:

- ``sparsity=s`` with ``scope="global"``: one ranking across all layers, the lowest
  ``s`` of all weights go (LeCun's OBD ranks globally); ``scope="layer"``: ``s`` of each layer.
- ``per_layer={"fc1": 0.92, ...}``: a fraction per named layer (Han's Table 1).
- ``quality=q``: Han's rule, prune ``|w| < q · std`` of the layer's surviving weights.

Counting includes weights already masked: pruning to 0.9 a layer that is 0.5 pruned
removes another 0.4 of it, and never brings back a masked weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError, SpecError
from ..layers import lookup
from .criteria import Criterion, make_criterion
from .mask import Target, apply_mask, resolve_targets

__all__ = ["PruneSpec", "prune", "prune_to", "select_masks"]

SCOPES = ("global", "layer")


@dataclass
class PruneSpec:
    """A validated pruning target (exactly one of ``sparsity``, ``per_layer``, ``quality``)."""

    sparsity: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    quality: float | None = None
    scope: str = "global"

    def __post_init__(self) -> None:
        given = [self.sparsity is not None, bool(self.per_layer), self.quality is not None]
        if sum(given) != 1:
            raise SpecError(
                "give exactly one pruning target: sparsity, per_layer or quality "
                f"(got sparsity={self.sparsity}, per_layer={self.per_layer or None}, "
                f"quality={self.quality})"
            )
        if self.scope not in SCOPES:
            raise SpecError(f"bad scope {self.scope!r}; expected one of {SCOPES}")
        fracs = {"sparsity": self.sparsity} if self.sparsity is not None else {}
        fracs.update(self.per_layer)
        for name, f in fracs.items():
            if not (isinstance(f, (int, float)) and 0.0 <= f <= 1.0):
                raise SpecError(f"bad sparsity {f!r} for {name!r}; expected a fraction in [0, 1]")
        if self.quality is not None and not (self.quality >= 0 and self.quality != float("inf")):
            raise SpecError(f"bad quality {self.quality!r}; expected a finite number >= 0")

    def scaled(self, progress: float) -> PruneSpec:
        """The target a fraction ``progress`` in [0, 1] of the way there.

        Sparsities grow geometrically (each step removes the same fraction of what is
        left: ``1 − (1 − s)^progress``), quality linearly.
        """
        def geo(s: float) -> float:
            return 1.0 - (1.0 - s) ** progress if s < 1 else (1.0 if progress >= 1 else s * progress)

        return PruneSpec(
            sparsity=None if self.sparsity is None else geo(self.sparsity),
            per_layer={k: geo(v) for k, v in self.per_layer.items()},
            quality=None if self.quality is None else self.quality * progress,
            scope=self.scope,
        )


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask of ``scores``' shape with its ``k`` lowest entries False."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        keep[torch.topk(scores.flatten(), k, largest=False, sorted=False).indices] = False
    return keep.reshape(scores.shape)


@torch.no_grad()
def select_masks(
    targets: list[Target], scores: list[torch.Tensor], spec: PruneSpec
) -> list[torch.Tensor]:
    """Keep-masks (True = keep) for ``targets`` from their ``scores`` and the ``spec``.

    Already-masked positions score ``-inf`` so they count as pruned first.
    """
    ranked = []
    for t, s in zip(targets, scores, strict=True):
        s = s.detach().to(torch.float64).nan_to_num(nan=float("inf"))
        m = t.mask
        if m is not None:
            s = s.masked_fill(~m, float("-inf"))
        ranked.append(s)
    if spec.quality is not None:
        out = []
        for t, s in zip(targets, ranked, strict=True):
            alive = s > float("-inf")
            w = t.value.detach()[alive].double()
            thr = spec.quality * float(w.std()) if w.numel() > 1 else 0.0
            out.append((s >= thr) & alive)
        return out
    if spec.per_layer:
        fracs = [lookup(t, spec.per_layer, {}) or 0.0 for t in targets]
        return [_lowest(s, round(f * s.numel())) for s, f in zip(ranked, fracs, strict=True)]
    assert spec.sparsity is not None
    if spec.scope == "layer":
        return [_lowest(s, round(spec.sparsity * s.numel())) for s in ranked]
    flat = torch.cat([s.flatten() for s in ranked])
    keep = _lowest(flat, round(spec.sparsity * flat.numel()))
    return list(torch.split(keep, [s.numel() for s in ranked]))


def prune_to(
    model: nn.Module,
    criterion: Criterion,
    spec: PruneSpec,
    targets: list[Target] | None = None,
) -> list[Target]:
    """Score ``targets`` with ``criterion`` and mask them to ``spec``. Returns the targets."""
    if targets is None:
        names = list(spec.per_layer) if spec.per_layer else None
        targets = resolve_targets(model, names)
    if not targets:
        raise SparsenetError(f"nothing to prune in {type(model).__name__}: no compressible weights")
    scores = criterion.scores(model, targets)
    for t, keep in zip(targets, select_masks(targets, scores, spec), strict=True):
        apply_mask(t.module, keep.reshape(t.value.shape), t.tensor)
    return targets


def prune(
    model: nn.Module,
    method: str | Criterion = "magnitude",
    sparsity: float | None = None,
    per_layer: dict[str, float] | None = None,
    quality: float | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    scope: str = "global",
    layers: list[str] | None = None,
    seed: int = 0,
    **obd: Any,
) -> nn.Module:
    """One-shot pruning of ``model`` in place; returns it.

    Parameters
    ----------
    model : any module; its compressible tensors (:mod:`sparsenet.layers`: Linear, Conv,
        Embedding and attention weights), or ``layers``, are pruned.
    method : ``"magnitude"``, ``"random"``, ``"obd"`` or a :class:`Criterion` instance.
    sparsity : fraction of weights to prune, ranked over ``scope`` (``"global"``/``"layer"``).
    per_layer : ``{"fc1": 0.92, "fc2.bias": 0.5, "conv": 0.6, "blocks.*": 0.8}`` fractions
        per name, group or glob (the most specific key wins, see :func:`sparsenet.layers.lookup`).
    quality : Han's rule, threshold ``quality × std`` per layer (magnitude only).
    data : ``(x, y)`` for ``obd`` (the Hessian's average).
    layers : restrict ``sparsity``/``quality`` to these names, groups or globs (default: all
        compressible tensors).
    seed : for ``random``.
    obd : ``loss``, ``form``, ``batch_size`` for OBD.

    Examples
    --------
    >>> prune(model, "magnitude", sparsity=0.92)                     # doctest: +SKIP
    >>> prune(model, "obd", per_layer={"fc1": 0.9}, data=(x, y))     # doctest: +SKIP
    """
    spec = PruneSpec(sparsity=sparsity, per_layer=dict(per_layer or {}), quality=quality, scope=scope)
    crit = make_criterion(method, data=data, seed=seed, **obd)
    if quality is not None and crit.name != "magnitude":
        raise SpecError(f"quality (Han's threshold rule) applies to magnitude only, not {crit.name!r}")
    targets = resolve_targets(model, layers) if layers is not None and not per_layer else None
    prune_to(model, crit, spec, targets)
    return model

