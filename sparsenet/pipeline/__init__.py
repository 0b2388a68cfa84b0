"""The Deep Compression pipeline: a TOML recipe of stages → a compressed ``.snn`` and a report.

::

    from sparsenet.pipeline import compress
    model, report = compress("lenet300", "fashion-mnist", "deep-compression", run_dir="run/")

Stages: ``train`` (or load), ``regularize``, ``prune``, ``factorize``, ``share``, ``encode``.
See :mod:`sparsenet.pipeline.recipe` for the recipe format and
:mod:`sparsenet.pipeline.runner` for the run directory, checkpoints and resume.
"""

from .entry import SEARCH, compress
from .recipe import (
    STAGE_KINDS,
    Recipe,
    RecipeError,
    Stage,
    builtin_recipes,
    load_recipe,
    parse_recipe,
    validate_recipe,
)
from .runner import RunError, read_manifest
from .search import BudgetError, SearchSettings, smallest
from .stages import STAGES, StageContext

__all__ = [
    "compress",
    "smallest",
    "SearchSettings",
    "BudgetError",
    "SEARCH",
    "Recipe",
    "Stage",
    "RecipeError",
    "RunError",
    "STAGE_KINDS",
    "STAGES",
    "StageContext",
    "builtin_recipes",
    "load_recipe",
    "parse_recipe",
    "validate_recipe",
    "read_manifest",
]
