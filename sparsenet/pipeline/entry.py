"""``sparsenet.compress``: a fixed recipe (:mod:`.runner`) or the budget search (:mod:`.search`)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..data import Dataset
from ..errors import SpecError
from ..training import TrainConfig
from .recipe import Recipe
from .runner import compress as run_recipe
from .search import SearchSettings, smallest

__all__ = ["compress", "SEARCH"]

SEARCH = "smallest"  # the recipe name that asks for the search instead of a fixed recipe


def compress(
    model: nn.Module | str,
    data: Dataset | str,
    recipe: Recipe | str | os.PathLike[str] | dict[str, Any] = "deep-compression",
    run_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    report: bool = True,
    config: TrainConfig | None = None,
    *,
    max_drop: float | None = None,
    time_budget: float | None = None,
    settings: SearchSettings | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Compress ``model`` on ``data``; returns ``(compressed model, report)``.

    ``recipe`` is a fixed recipe (a built-in name, a ``.toml`` path, plain data or a
    :class:`Recipe`; see :func:`sparsenet.pipeline.runner.compress` for the other
    parameters), or ``"smallest"``: the smallest ``.snn`` whose validation accuracy is
    within ``max_drop`` points of dense (:func:`sparsenet.pipeline.search.smallest`, with
    ``time_budget`` seconds and ``settings``).

    Examples
    --------
    >>> compress("lenet300", "fashion-mnist", "deep-compression", run_dir="run/")  # doctest: +SKIP
    >>> compress(model, data, "smallest", max_drop=0.3, run_dir="run/")            # doctest: +SKIP
    """
    if isinstance(recipe, str) and recipe == SEARCH:
        if max_drop is None:
            raise SpecError("recipe 'smallest' needs max_drop= (accuracy points it may lose)")
        if not report:
            raise SpecError("recipe 'smallest' always writes its report")
        return smallest(model, data, max_drop, run_dir, out, time_budget=time_budget,
                        settings=settings, resume=resume, force=force, quiet=quiet, config=config)
    if max_drop is not None or time_budget is not None or settings is not None:
        raise SpecError(f"max_drop, time_budget and settings go with recipe 'smallest', not a "
                        f"fixed recipe ({recipe!r})")
    return run_recipe(model, data, recipe, run_dir=run_dir, out=out, resume=resume, force=force,
                      quiet=quiet, report=report, config=config)
