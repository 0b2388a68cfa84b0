"""Zero out weights: masks, criteria (magnitude, random, OBD), schedules, sensitivity.

The "Zero out W_ij" branch of the review. A :class:`Mask` parametrisation keeps pruned
weights at exactly zero through training and checkpoints; a criterion scores weights
(lowest pruned); :func:`prune`, :func:`prune_iterative` and :class:`GradualPruning` decide
how much and when; :func:`sensitivity` measures each layer alone; :func:`bake` makes it
permanent.
"""

from .criteria import CRITERIA, OBD, Criterion, Magnitude, Random, make_criterion
from .mask import (
    Mask,
    Target,
    apply_mask,
    bake,
    get_mask,
    prunable_targets,
    resolve_targets,
    sparsity_report,
)
from .obd import hessian_diagonal, module_chain, resolve_form
from .oneshot import PruneSpec, prune, prune_to, select_masks
from .schedules import (
    GradualPruning,
    SparsityMonitor,
    cubic_progress,
    cubic_sparsity,
    prune_gradual,
    prune_iterative,
)
from .sensitivity import DEFAULT_GRID, plot_sensitivity, sensitivity, write_sensitivity

__all__ = [
    # masks
    "Mask",
    "Target",
    "apply_mask",
    "get_mask",
    "prunable_targets",
    "resolve_targets",
    "bake",
    "sparsity_report",
    # criteria
    "Criterion",
    "Magnitude",
    "Random",
    "OBD",
    "CRITERIA",
    "make_criterion",
    "hessian_diagonal",
    "module_chain",
    "resolve_form",
    # one-shot and schedules
    "PruneSpec",
    "prune",
    "prune_to",
    "select_masks",
    "prune_iterative",
    "prune_gradual",
    "GradualPruning",
    "SparsityMonitor",
    "cubic_sparsity",
    "cubic_progress",
    # sensitivity
    "sensitivity",
    "plot_sensitivity",
    "write_sensitivity",
    "DEFAULT_GRID",
]
