"""Zero out weights: masks, criteria (magnitude, random, OBD, SparseGPT, Wanda, OBS), patterns,
schedules, sensitivity.

The "Zero out W_ij" branch of the review. A :class:`Mask` parametrisation keeps pruned
weights at exactly zero through training and checkpoints; a criterion scores weights
(lowest pruned); :func:`prune`, :func:`prune_iterative` and :class:`GradualPruning` decide
how much and when; :func:`sensitivity` measures each layer alone; :func:`bake` makes it
permanent.
"""

from .base import DEFAULT_CALIBRATION, Calibrated
from .calibration import LayerView, Stats, layer_view, record, sequential
from .criteria import (
    CALIBRATED,
    CRITERIA,
    DEFAULT_OBD_SAMPLES,
    OBD,
    OBS,
    Criterion,
    Magnitude,
    Random,
    SparseGPT,
    Wanda,
    make_criterion,
)
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
from .oneshot import PruneSpec, layer_counts, prune, prune_to, select_masks
from .patterns import Pattern, parse_pattern, satisfies
from .schedule_config import PruneResult, PruneSchedule
from .schedules import (
    GradualPruning,
    SparsityMonitor,
    cubic_progress,
    cubic_sparsity,
    prune_gradual,
    prune_iterative,
)
from .sensitivity import DEFAULT_GRID, plot_sensitivity, sensitivity, write_sensitivity
from .sparsegpt import obs_matrix, sparsegpt_matrix

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
    "Calibrated",
    "SparseGPT",
    "Wanda",
    "OBS",
    "CRITERIA",
    "CALIBRATED",
    "DEFAULT_CALIBRATION",
    "make_criterion",
    "DEFAULT_OBD_SAMPLES",
    "sparsegpt_matrix",
    "obs_matrix",
    # calibration and patterns
    "LayerView",
    "Stats",
    "layer_view",
    "record",
    "sequential",
    "Pattern",
    "parse_pattern",
    "satisfies",
    "hessian_diagonal",
    "module_chain",
    "resolve_form",
    # one-shot and schedules
    "PruneSpec",
    "prune",
    "prune_to",
    "select_masks",
    "layer_counts",
    "prune_iterative",
    "prune_gradual",
    "PruneSchedule",
    "PruneResult",
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
