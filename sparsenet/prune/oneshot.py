"""One-shot pruning: score, pick the lowest, mask. The thin function over a criterion.

Targets come in three forms:

- ``sparsity=s`` with ``scope="global"``: one ranking across all layers, the lowest
  ``s`` of all weights go (LeCun's OBD ranks globally); ``scope="layer"``: ``s`` of each layer.
- ``per_layer={"fc1": 0.92, ...}``: a fraction per named layer (Han's Table 1).
- ``quality=q``: Han's rule, prune ``|w| < q · std`` of the layer's surviving weights.

Counting includes weights already masked: pruning to 0.9 a layer that is 0.5 pruned
removes another 0.4 of it, and never brings back a masked weight.

A ``pattern`` (``"2:4"``, :mod:`sparsenet.prune.patterns`) first prunes the M − N lowest
of every run of M inputs, then ranks the rest to the count; without a sparsity it means
``1 − N/M``. Calibrated criteria (sparsegpt, wanda, obs) prune each layer themselves to
exact counts: per layer as given, and for a global target with the per-layer counts of
the global magnitude ranking (their own scores are comparable only within a layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError, SpecError
from ..layers import lookup
from .base import Calibrated
from .criteria import Criterion, make_criterion
from .mask import Target, apply_mask, resolve_targets
from .patterns import Pattern, matrix_view, nm_prune, parse_pattern

__all__ = ["PruneSpec", "prune", "prune_to", "select_masks", "layer_counts"]

SCOPES = ("global", "layer")


@dataclass
class PruneSpec:
    """A validated pruning target (exactly one of ``sparsity``, ``per_layer``, ``quality``)."""

    sparsity: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    quality: float | None = None
    scope: str = "global"
    pattern: str | None = None

    def __post_init__(self) -> None:
        pat = parse_pattern(self.pattern)
        self.pattern = None if pat is None else str(pat)
        if pat is not None and self.sparsity is None and not self.per_layer and self.quality is None:
            self.sparsity = pat.min_sparsity
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
        if pat is not None:
            if self.quality is not None:
                raise SpecError(f"pattern {pat} needs a sparsity target, not quality")
            low = [(k, f) for k, f in fracs.items() if f < pat.min_sparsity - 1e-12]
            if low:
                raise SpecError(
                    f"pattern {pat} prunes at least {pat.min_sparsity:g} of a layer; sparsity "
                    f"{low[0][1]!r} for {low[0][0]!r} asks for less"
                )

    @property
    def pattern_(self) -> Pattern | None:
        """The parsed :class:`~sparsenet.prune.patterns.Pattern` (``None``: unstructured)."""
        return parse_pattern(self.pattern)

    def scaled(self, progress: float) -> PruneSpec:
        """The target a fraction ``progress`` in [0, 1] of the way there.

        Sparsities grow geometrically (each step removes the same fraction of what is
        left: ``1 − (1 − s)^progress``), quality linearly.
        """
        pat = self.pattern_
        floor = 0.0 if pat is None else pat.min_sparsity  # a pattern holds from the first round

        def geo(s: float) -> float:
            g = 1.0 - (1.0 - s) ** progress if s < 1 else (1.0 if progress >= 1 else s * progress)
            return max(g, floor)

        return PruneSpec(
            sparsity=None if self.sparsity is None else geo(self.sparsity),
            per_layer={k: geo(v) for k, v in self.per_layer.items()},
            quality=None if self.quality is None else self.quality * progress,
            scope=self.scope,
            pattern=self.pattern,
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

    Already-masked positions score ``-inf`` so they count as pruned first; with a pattern,
    so do the M − N lowest of every run.
    """
    ranked = []
    pat = spec.pattern_
    for t, s in zip(targets, scores, strict=True):
        s = s.detach().to(torch.float64).nan_to_num(nan=float("inf"))
        m = t.mask
        if m is not None:
            s = s.masked_fill(~m, float("-inf"))
        if pat is not None:
            s = s.masked_fill(nm_prune(matrix_view(s), pat).reshape(s.shape), float("-inf"))
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
    if isinstance(criterion, Calibrated):
        if spec.quality is not None:
            raise SpecError(f"quality (Han's threshold rule) applies to magnitude, not {criterion.name!r}")
        criterion.apply(model, targets, layer_counts(targets, spec), spec.pattern_)
        return targets
    scores = criterion.scores(model, targets)
    for t, keep in zip(targets, select_masks(targets, scores, spec), strict=True):
        apply_mask(t.module, keep.reshape(t.value.shape), t.tensor, spec.pattern)
    return targets


@torch.no_grad()
def layer_counts(targets: list[Target], spec: PruneSpec) -> list[int]:
    """Entries of each target pruned under ``spec`` (already-masked ones included).

    A fraction per layer rounds ``f · size``; a global fraction takes the per-layer counts
    of the global magnitude ranking (with the pattern's runs and existing masks first).
    """
    if spec.quality is not None:
        raise SpecError("layer counts need a sparsity or per-layer target, not quality")
    if spec.per_layer:
        fracs = [spec.per_layer.get(t.name, spec.per_layer.get(t.key, 0.0)) for t in targets]
        return [round(f * t.value.numel()) for t, f in zip(targets, fracs, strict=True)]
    assert spec.sparsity is not None
    if spec.scope == "layer":
        return [round(spec.sparsity * t.value.numel()) for t in targets]
    mags = [t.value.detach().abs() for t in targets]
    return [int((~k).sum()) for k in select_masks(targets, mags, spec)]


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
    pattern: str | None = None,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """One-shot pruning of ``model`` in place; returns it.

    Parameters
    ----------
    model : any module; its compressible tensors (:mod:`sparsenet.layers`: Linear, Conv,
        Embedding and attention weights), or ``layers``, are pruned.
    method : ``"magnitude"``, ``"random"``, ``"obd"``, ``"sparsegpt"``, ``"wanda"``,
        ``"obs"`` or a :class:`Criterion` instance.
    sparsity : fraction of weights to prune, ranked over ``scope`` (``"global"``/``"layer"``).
    per_layer : ``{"fc1": 0.92, "fc2.bias": 0.5, "conv": 0.6, "blocks.*": 0.8}`` fractions
        per name, group or glob (the most specific key wins, see :func:`sparsenet.layers.lookup`).
    quality : Han's rule, threshold ``quality × std`` per layer (magnitude only).
    data : ``(x, y)`` for ``obd`` (the Hessian's average) and the calibrated criteria
        (their first ``calibration`` samples).
    layers : restrict ``sparsity``/``quality`` to these names, groups or globs (default: all
        compressible tensors).
    pattern : ``"2:4"`` (any N:M) or ``None``/``"unstructured"``.
    seed : for ``random``.
    options : the criterion's settings: ``loss``, ``form``, ``batch_size`` for OBD;
        ``calibration`` (1,024), ``blocksize`` (128), ``damp`` (0.01) for SparseGPT,
        ``calibration``, ``group`` for Wanda, ``calibration``, ``damp`` for OBS.

    Examples
    --------
    >>> prune(model, "magnitude", sparsity=0.92)                     # doctest: +SKIP
    >>> prune(model, "obd", per_layer={"fc1": 0.9}, data=(x, y))     # doctest: +SKIP
    >>> prune(model, "sparsegpt", sparsity=0.9, data=(x, y), calibration=1024)  # doctest: +SKIP
    >>> prune(model, "wanda", pattern="2:4", data=(x, y))             # doctest: +SKIP
    """
    spec = PruneSpec(sparsity=sparsity, per_layer=dict(per_layer or {}), quality=quality, scope=scope,
                     pattern=pattern)
    crit = make_criterion(method, data=data, seed=seed, **options)
    if quality is not None and crit.name != "magnitude":
        raise SpecError(f"quality (Han's threshold rule) applies to magnitude only, not {crit.name!r}")
    targets = resolve_targets(model, layers) if layers is not None and not per_layer else None
    prune_to(model, crit, spec, targets)
    return model

