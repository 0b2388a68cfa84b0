"""The stage implementations: thin adapters from a validated recipe stage to the library.

Each stage is ``fn(model, ctx) -> model``. It may transform ``model`` in place or return a
new module, and puts JSON-able facts for the report into ``ctx.record`` (training history,
sensitivity curves, the encoder's size report...). Every stage trains through
:func:`sparsenet.training.fit`; the actual transforms live in :mod:`sparsenet.prune`,
:mod:`sparsenet.regularize`, :mod:`sparsenet.lowrank`, :mod:`sparsenet.share` and
:mod:`sparsenet.coding` (all part of the package).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import bn
from ..checkpoint import apply_transforms, describe_transforms
from ..coding import save_snn
from ..data import Dataset
from ..errors import SparsenetError
from ..layers import compressible_tensors
from ..loading import load
from ..lowrank import factorize
from ..models import arch_of
from ..progress import log
from ..prune import DEFAULT_GRID, PruneSchedule, make_criterion, prune_iterative, sensitivity
from ..regularize import WeightPenalty
from ..share import share_weights
from ..training import Callback, TrainConfig, default_config, evaluate, fit
from ..training.distill import Distill
from .recipe import Recipe, Stage

__all__ = ["StageContext", "STAGES", "stage", "base_config", "retrain_config", "config_facts",
           "STAGE_SEED_STRIDE", "SENSITIVITY_SAMPLES"]

StageFn = Callable[[nn.Module, "StageContext"], nn.Module]
STAGES: dict[str, StageFn] = {}

# A stage's seed is recipe seed * STAGE_SEED_STRIDE + stage index: distinct for every (seed,
# stage) pair of recipes with fewer stages than this (checks.MAX_SEED keeps fit's seeds below
# 2**64 with it), and fixed by index so a resumed run replays the same stage seeds.
STAGE_SEED_STRIDE = 1000
# The prune stage's sensitivity scan evaluates every layer at every grid point, so it caps the
# test images it scores (and the training images OBD/calibrated criteria see) at this many, to
# keep the scan short on a CPU; the curves are for the report, not for pruning decisions.
SENSITIVITY_SAMPLES = 2000


def stage(kind: str) -> Callable[[StageFn], StageFn]:
    """Register ``fn`` as the implementation of stage ``kind``."""

    def deco(fn: StageFn) -> StageFn:
        STAGES[kind] = fn
        return fn

    return deco


@dataclass
class StageContext:
    """What a stage sees: its settings, the data, where to write, and a record for the report."""

    recipe: Recipe
    index: int
    stage: Stage
    data: Dataset
    pretrained: bool = False
    quiet: bool = False
    work_dir: Path | None = None
    out: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)
    # The user's training set-up (compress(config=...)); None: the model's default_config.
    config: TrainConfig | None = None
    # A bare instance of a custom (unregistered) architecture, to load files into; None
    # for registry models, whose files rebuild themselves. Stages deep-copy it.
    bare: nn.Module | None = None
    # Loads the run's dense model (the teacher of ``distill``); None: no teacher available.
    teacher_loader: Callable[[], nn.Module] | None = None

    def teacher(self) -> nn.Module:
        """The run's dense model: after its ``train`` stage, else the model the run began with."""
        if self.teacher_loader is None:
            raise SparsenetError(f"{self.name}: distill needs the run's dense model; none given")
        return self.teacher_loader()

    def distill(self) -> list[Callback]:
        """A :class:`~sparsenet.training.distill.Distill` callback if the stage sets ``distill``."""
        weight = self.settings.get("distill") or 0.0
        if weight == 0:
            return []
        temperature = self.settings.get("distill_temperature") or 4.0
        return [Distill(self.teacher(), weight, temperature)]

    def fresh_model(self) -> nn.Module | None:
        """A deep copy of :attr:`bare` (``None`` for registry models)."""
        return copy.deepcopy(self.bare) if self.bare is not None else None

    @property
    def settings(self) -> dict[str, Any]:
        return self.stage.settings

    @property
    def seed(self) -> int:
        """Seed of this stage: the recipe's seed and the stage index, so a resumed run replays."""
        return self.recipe.seed * STAGE_SEED_STRIDE + self.index

    @property
    def name(self) -> str:
        return f"stages[{self.index}].{self.stage.kind}"


def config_facts(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as JSON facts for manifests and resume digests (without ``quiet``)."""
    return {k: v for k, v in asdict(cfg).items() if k != "quiet"}


def base_config(model: nn.Module, ctx: StageContext) -> TrainConfig:
    """The user's training set-up (``ctx.config``, else the model's default recipe), with the
    recipe's ``lr`` and the train stage's overrides."""
    if ctx.config is not None:
        cfg = ctx.config
    else:
        arch = arch_of(model)
        cfg = default_config(arch["name"] if arch else "custom", ctx.data.name)
    first = ctx.recipe.stages[0] if ctx.recipe.stages else None
    overrides = dict(first.settings) if first is not None and first.kind == "train" else {}
    fields = ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay", "schedule",
              "loss", "label_smoothing")
    changes = {k: overrides[k] for k in fields if k in overrides}
    if ctx.recipe.lr is not None and "lr" not in changes:
        changes["lr"] = ctx.recipe.lr
    return cfg.replace(**changes, quiet=ctx.quiet)


def retrain_config(model: nn.Module, ctx: StageContext, epochs: int) -> TrainConfig:
    """Retraining/fine-tuning: the base recipe at ``lr × lr_factor`` (Han: lr/10), stage seed;
    the stage's own ``optimizer``, ``lr`` (then no factor) and ``batch_size`` if it sets them."""
    cfg = base_config(model, ctx)
    s = ctx.settings
    lr = s["lr"] if "lr" in s else cfg.lr * s["lr_factor"]
    changes = {k: s[k] for k in ("optimizer", "batch_size") if k in s}
    return cfg.replace(epochs=epochs, lr=lr, seed=ctx.seed, **changes)


def _train(model: nn.Module, ctx: StageContext, cfg: TrainConfig,
           callbacks: list[Callback] | None = None, tag: str = "") -> list[dict[str, Any]]:
    if cfg.epochs == 0:
        return []
    history = fit(model, ctx.data.train, cfg, callbacks=callbacks or [])
    ctx.record.setdefault("history", []).append(
        {"tag": tag, "config": config_facts(cfg), "epochs": history})
    return history


@stage("train")
def train_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """Load ``load`` if given; else train from the current weights unless already trained."""
    s = ctx.settings
    if "load" in s:
        loaded, meta = load(s["load"], model=ctx.fresh_model(), with_metadata=True)
        ctx.record["loaded"] = s["load"]
        ctx.record["loaded_metadata"] = {
            k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))
        }
        return loaded
    if ctx.pretrained and s["skip_if_trained"]:
        ctx.record["skipped"] = "the pipeline started from a trained model"
        log(f"{ctx.name}: model is already trained, skipping", ctx.quiet)
        return model
    cfg = base_config(model, ctx).replace(seed=ctx.seed)
    _train(model, ctx, cfg, tag="train")
    return model


@stage("regularize")
def regularize_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """Train further with weight penalties (L1 / L2 / group lasso) from sparsenet.regularize."""
    s = ctx.settings
    callbacks: list[Callback] = []
    for kind in ("l1", "l2", "group_lasso"):
        if s[kind] > 0:
            callbacks.append(_weight_penalty(kind, s[kind], s.get("layers")))
    cfg = retrain_config(model, ctx, s["epochs"])
    _train(model, ctx, cfg, callbacks + ctx.distill(), tag="regularize")
    return model


def _weight_penalty(kind: str, strength: float, layers: list[str] | None) -> Callback:
    name = {"group_lasso": "group"}.get(kind, kind)
    return WeightPenalty(name, strength, layers=layers)


@stage("prune")
def prune_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """Iterative pruning (:func:`sparsenet.prune.prune_iterative`): ``iterations`` rounds of
    prune-to-the-next-target then retrain at ``lr × lr_factor`` (Han: lr/10)."""
    s = ctx.settings
    if s["sensitivity"]:
        ctx.record["sensitivity"] = _sensitivity(model, ctx)
    target = {k: s[k] for k in ("sparsity", "per_layer", "quality") if k in s}
    if "per_layer" in target:
        target["per_layer"] = _per_layer_after_swaps(model, target["per_layer"])
    cfg = retrain_config(model, ctx, s["retrain_epochs"])
    ctx.record["retrain_config"] = config_facts(cfg)
    options = {k: s[k] for k in ("calibration", "blocksize", "damp") if k in s}
    crit = make_criterion(s["method"], data=ctx.data.train, seed=ctx.seed, **options)
    schedule = PruneSchedule(
        steps=s["iterations"], retrain_epochs=s["retrain_epochs"], lr=cfg.lr,
        recalibrate_bn=s.get("recalibrate_bn", True), pattern=s.get("pattern"),
    )
    result = prune_iterative(model, ctx.data.train, crit, **target, schedule=schedule,
                             config=cfg, val=ctx.data.test, callbacks=ctx.distill(),
                             seed=ctx.seed)
    ctx.record["iterations"] = _jsonable(
        [{k: v for k, v in h.items() if k != "fit"} for h in result.history]
    )
    return result.model


def _per_layer_after_swaps(model: nn.Module, per_layer: dict[str, float]) -> dict[str, float]:
    """Per-layer targets for a model whose layers may have been swapped for containers.

    A factorize stage replaces ``conv2`` with ``conv2.0`` and ``conv2.1`` (the low-rank
    factors); a target given for ``conv2`` then applies to each of its compressible parts.
    """
    modules = dict(model.named_modules())
    out: dict[str, float] = {}
    for name, value in per_layer.items():
        mod = modules.get(name)
        if mod is None or isinstance(getattr(mod, "weight", None), torch.Tensor):
            out[name] = value  # a plain layer, or unknown: prune's own check names it
            continue
        parts = [f"{name}.{t.name}" for t in compressible_tensors(mod)]
        out.update(dict.fromkeys(parts or [name], value))
    return out


def _sensitivity(model: nn.Module, ctx: StageContext) -> dict[str, Any]:
    """Per-layer accuracy against sparsity without retraining (Han's Figure 6), on the test set.

    The grid is :data:`sparsenet.prune.DEFAULT_GRID`, as for ``sparsenet sensitivity``. The
    scan restores every layer and its criterion draws from a private generator only, so the
    grid changes the report's curves, not the model or the ``.snn`` bytes.
    """
    n = SENSITIVITY_SAMPLES
    x, y = ctx.data.test
    xt, yt = ctx.data.train
    result = sensitivity(model, (x[:n], y[:n]), method=ctx.settings["method"],
                         sparsities=DEFAULT_GRID, score_data=(xt[:n], yt[:n]), seed=ctx.seed)
    return _jsonable(result)


@stage("factorize")
def factorize_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """Truncated-SVD factorisation (module swap), then fine-tuning."""
    s = ctx.settings
    kwargs = {k: s[k] for k in ("rank", "energy", "budget") if k in s}
    model = factorize(model, **kwargs)
    _train(model, ctx, retrain_config(model, ctx, s["finetune_epochs"]), ctx.distill(),
           tag="finetune")
    return model


@stage("share")
def share_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """k-means weight sharing (``bits`` per layer, ``init``), then centroid fine-tuning."""
    s = ctx.settings
    if s.get("fold_bn", True) and bn.has_batchnorm(model):
        folded: dict[str, Any] = {}
        model = bn.fold_bn(model, report=folded)  # shared weights are then the deployed ones
        ctx.record["fold_bn"] = folded
    model = share_weights(model, dict(s["weight_bits"]), init=s["init"], seed=ctx.seed)
    cfg = base_config(model, ctx).replace(
        epochs=s["finetune_epochs"], lr=s["lr"], optimizer=s["optimizer"], seed=ctx.seed,
        **({"batch_size": s["batch_size"]} if "batch_size" in s else {}),
    )
    _recalibrate(model, ctx, cfg, "after_sharing")
    ctx.record["accuracy_before_finetune"] = evaluate(model, ctx.data.test)["accuracy"]
    _train(model, ctx, cfg, ctx.distill(), tag="finetune")
    if cfg.epochs:
        _recalibrate(model, ctx, cfg, "after_finetune")
    return model


def _recalibrate(model: nn.Module, ctx: StageContext, cfg: TrainConfig, when: str) -> None:
    """Recalibrate BatchNorm statistics left in ``model`` (recorded under ``recalibrate_bn``)."""
    if ctx.settings.get("recalibrate_bn", True) and bn.has_batchnorm(model):
        n = bn.recalibrate_bn(model, ctx.data.train, batch_size=cfg.batch_size, seed=ctx.seed)
        ctx.record.setdefault("recalibrate_bn", {})[when] = n


@stage("encode")
def encode_stage(model: nn.Module, ctx: StageContext) -> nn.Module:
    """Write the ``.snn`` file with the chosen coder and continue with the model loaded back."""
    out = ctx.out
    if out is None:
        raise SparsenetError(f"{ctx.name}: no output path for the .snn file")
    meta = {"dataset": ctx.data.name, "recipe": ctx.recipe.name}
    size = save_snn(
        model, out, coder=ctx.settings["coder"], gap_bits=ctx.settings["gap_bits"],
        metadata=meta,
    )
    ctx.record["out"] = str(out)
    ctx.record["file_bytes"] = out.stat().st_size
    ctx.record["size_report"] = _jsonable(size)
    loaded: nn.Module = load(out, model=_snn_target(model, ctx))
    return loaded


def _snn_target(model: nn.Module, ctx: StageContext) -> nn.Module | None:
    """For a custom model, a fresh bare copy with ``model``'s module swaps (what a ``.snn``
    stores weights for); ``None`` for registry models, whose files rebuild themselves."""
    target = ctx.fresh_model() if arch_of(model) is None else None
    if target is not None:
        apply_transforms(target, [e for e in describe_transforms(model) if "tensor" not in e])
    return target


def _jsonable(obj: Any) -> Any:
    """Plain JSON data from numpy/torch scalars and arrays, nested dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
