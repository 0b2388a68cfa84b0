"""Options of the budget search (:mod:`sparsenet.pipeline.search`), checked on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

from ..errors import SpecError

__all__ = ["SearchSettings", "MAX_SPARSITY", "LADDER", "ALLOCATIONS"]

ALLOCATIONS = ("ladder", "greedy")
# Global sparsities the ladder climbs: coarse where every model survives, fine where the
# budget usually runs out (Deep Compression's LeNets end between 0.9 and 0.97).
LADDER = (0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.955, 0.96, 0.965, 0.97, 0.975,
          0.98, 0.985, 0.99)

# A prune move never takes a layer past this density floor (a layer with no weights left
# cuts the network).
MAX_SPARSITY = 0.998
_START_BITS = {"conv": 8, "fc": 6, "embedding": 8, "attention": 6}


@dataclass(frozen=True)
class SearchSettings:
    """Options of the search (see the module docstring for what each step does).

    Parameters
    ----------
    max_drop : accuracy points the validation accuracy may lose (0.3 = 0.3 points).
    time_budget : seconds of searching before the final stages run (``None``: no limit).
    holdout : validation images held out of the training set (``None``: 1/12 of it).
    allocation : how pruning spreads over layers: ``"ladder"`` (global magnitude ranking,
        sparsity raised rung by rung, the rung chosen on an isotonic fit of the validation
        accuracies) or ``"greedy"`` (per-layer moves priced in bytes per point, after a
        global warm start).
    ladder : the global sparsities of the rungs, increasing.
    warmup_sparsity, warmup_iterations : the greedy allocation's global warm start (and the
        iterations of the ladder's first rung).
    prune_step, min_step : fraction of a layer's remaining weights one prune move removes,
        and the smallest step tried after rejections halve it.
    retrain_epochs, lr_factor : retraining after each prune move, at the training lr × factor.
    recover_rounds : a rung (or prune move) that misses the budget after its retraining gets
        up to this many more rounds of ``retrain_epochs`` while each one gains accuracy.
    bits_reserve : the share of the budget pruning leaves to the bits phase: a prune move
        needs its retrained float model within ``(1 - bits_reserve) · max_drop``.
    start_bits, min_bits : codebook bits per layer kind at the start, and the fewest tried.
    final_epochs, finetune_epochs : the final retraining and the centroid fine-tuning.
    distill, distill_temperature : every retraining and the centroid fine-tuning also follow
        the dense model's softened outputs (:class:`~sparsenet.training.distill.Distill`,
        weight and temperature; ``distill=0``: labels alone). On LeNet-300 / Fashion-MNIST
        it halved the validation drop of a retrained 80–95 % sparse model and cut its
        disagreement with the dense model by a sixth (docs/pipeline.md has the sweep,
        scored on validation images only).
    confidence : how sure the search must be that a point's drop is within the budget. A
        point's validation drop is a paired difference with standard error ≈ √d / n (``d`` of
        the ``n`` validation images labelled differently from the dense model); a point meets
        the budget when ``drop + z·√d/n <= max_drop``, ``z`` the normal quantile of
        ``confidence``. That holds for the rung kept, bit moves, prune moves and the final
        file; recovery rounds still run on the drop as measured, so the rungs are the same at
        any confidence. ``0.5`` (``z = 0``, the default): the drop as measured. On
        Fashion-MNIST's 5,000 validation images √d / n is 0.2–0.26 points at 2–3.4 %
        disagreement, as large as a 0.3-point budget (docs/pipeline.md measures what that does
        to the test drop); on small sets it exceeds the budget (MNIST-5k's 333 images:
        0.4–0.8 points at 2–6 differing images).
    seed : the recipe's seed.
    """

    max_drop: float
    time_budget: float | None = None
    holdout: int | None = None
    allocation: str = "ladder"
    ladder: tuple[float, ...] = LADDER
    warmup_sparsity: float = 0.8
    warmup_iterations: int = 2
    prune_step: float = 0.25
    min_step: float = 0.06
    retrain_epochs: int = 4
    recover_rounds: int = 3
    lr_factor: float = 0.1
    bits_reserve: float = 0.1
    start_bits: dict[str, int] = field(default_factory=lambda: dict(_START_BITS))
    min_bits: int = 2
    final_epochs: int = 8
    finetune_epochs: int = 4
    distill: float = 1.0
    distill_temperature: float = 4.0
    confidence: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise SpecError(f"bad {name} {getattr(self, name)!r}; expected {expected}")

        def finite(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(finite(self.max_drop) and 0 <= self.max_drop <= 100, "max_drop",
             "accuracy points between 0 and 100")
        need(self.time_budget is None or (finite(self.time_budget) and self.time_budget > 0),
             "time_budget", "seconds > 0")
        need(self.holdout is None or (isinstance(self.holdout, int) and self.holdout > 0),
             "holdout", "a number of images > 0")
        need(self.allocation in ALLOCATIONS, "allocation", f"one of {ALLOCATIONS}")
        need(bool(self.ladder) and all(0 <= a < b < 1 for a, b in zip(
            (0.0, *self.ladder), self.ladder, strict=False)), "ladder",
             "increasing sparsities in (0, 1)")
        need(0 <= self.warmup_sparsity < 1, "warmup_sparsity", "a fraction in [0, 1)")
        need(0 < self.min_step <= self.prune_step < 1, "prune_step", "0 < min_step <= prune_step < 1")
        need(1 <= self.min_bits <= 8, "min_bits", "1 to 8")
        need(0 < self.lr_factor <= 1, "lr_factor", "a factor in (0, 1]")
        need(0 <= self.bits_reserve < 1, "bits_reserve", "a fraction in [0, 1)")
        need(finite(self.distill) and self.distill >= 0, "distill", "a weight >= 0")
        need(finite(self.distill_temperature) and self.distill_temperature > 0,
             "distill_temperature", "a temperature > 0")
        need(finite(self.confidence) and 0.5 <= self.confidence < 1, "confidence",
             "a probability in [0.5, 1)")
        for name in ("warmup_iterations", "retrain_epochs", "recover_rounds",
                     "final_epochs", "finetune_epochs"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                 "an integer >= 0")

    @property
    def z(self) -> float:
        """The normal quantile of ``confidence`` (0 at 0.5)."""
        return 0.0 if self.confidence == 0.5 else NormalDist().inv_cdf(self.confidence)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ladder"] = list(self.ladder)
        return d


