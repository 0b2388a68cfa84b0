"""Matrix decomposition: truncated-SVD factorisation of Linear and Conv2d layers.

The review's A (m×n) = B (m×r) C (r×n), storage m·n → r·(m + n), with the truncated SVD
A ≈ U_r Σ_r V_rᵀ split as B = U_r Σ_r^½, C = Σ_r^½ V_rᵀ. A factorised layer is a module
swap (:class:`LowRankLinear`, :class:`LowRankConv2d`) of two ordinary layers, so it trains,
saves/loads (transform kind ``"lowrank"``) and can be pruned or weight-shared as usual::

    plan = plan_ranks(model, budget=0.2)      # or rank=32, rank={"fc1": 32}, energy=0.9
    print(format_plan(plan))
    factorize(model, plan=plan)
    finetune(model, data.train, TrainConfig(epochs=3, lr=0.01), val=data.test)
"""

from .factorize import FactorDrift, factorize, finetune, format_plan, lowrank_ranks, plan_table
from .layers import (
    LowRankConv2d,
    LowRankLinear,
    factorize_layer,
    is_lowrank,
    singular_values,
    svd_factors,
    weight_matrix,
)
from .plots import plot_spectra, plot_spectrum
from .ranks import LayerPlan, candidate_layers, energy_rank, plan_ranks

__all__ = [
    "factorize",
    "plan_ranks",
    "finetune",
    "FactorDrift",
    "LayerPlan",
    "LowRankLinear",
    "LowRankConv2d",
    "factorize_layer",
    "candidate_layers",
    "energy_rank",
    "format_plan",
    "plan_table",
    "lowrank_ranks",
    "is_lowrank",
    "singular_values",
    "svd_factors",
    "weight_matrix",
    "plot_spectra",
    "plot_spectrum",
]
