"""Recipes: an ordered list of compression stages in TOML, validated completely before a run.

A recipe file looks like::

    name = "deep-compression"
    seed = 0

    [[stages]]
    train = { skip_if_trained = true }

    [[stages]]
    [stages.prune]
    method = "magnitude"
    sparsity = 0.92
    iterations = 3
    retrain_epochs = 4

    [[stages]]
    share = { weight_bits = "conv=8,fc=5", init = "linear", finetune_epochs = 2 }

    [[stages]]
    encode = { coder = "huffman" }

Each entry of ``stages`` is a table with exactly one key, the stage kind. Every key is
checked against the schema below; the first problem raises :class:`RecipeError` naming
the key path, e.g. ``stages[2].prune.sparsity: expected a number in (0, 1), got 1.5``.
Defaults are filled in, so :meth:`Recipe.to_dict` is the complete, normalised recipe
(its hash identifies a run directory's recipe on ``--resume``). Keys renamed since
(:data:`RENAMED_KEYS`: ``share.bits`` → ``share.weight_bits``, ``encode.index_bits`` →
``encode.gap_bits``) are still accepted with a DeprecationWarning and normalised to the
new name.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from .checks import (
    MAX_SEED,
    Check,
    RecipeError,
    boolean,
    choice,
    fail,
    index_bits_spec,
    integer,
    number,
    parse_bits,
    pattern_spec,
    per_layer,
    rank_spec,
    string,
    string_list,
)

__all__ = [
    "RecipeError",
    "Recipe",
    "Stage",
    "STAGE_KINDS",
    "load_recipe",
    "parse_recipe",
    "validate_recipe",
    "builtin_recipes",
    "parse_bits",
]


_MISSING = object()

_TRAIN_FIELDS: dict[str, tuple[Check, Any]] = {
    "epochs": (integer(0), None),
    "lr": (number(0, lo_open=True), None),
    "batch_size": (integer(1), None),
    "optimizer": (choice("sgd", "adam", "adamw"), None),
    "momentum": (number(0, 1, hi_open=True), None),
    "weight_decay": (number(0), None),
    "schedule": (choice("cosine", "step", "constant"), None),
    "loss": (choice("cross_entropy", "mse"), None),
    "label_smoothing": (number(0, 1, hi_open=True), None),
}
_LR_FACTOR = (number(0, 1, lo_open=True), 0.1)
# Per-stage overrides of the training set-up (the user's TrainConfig or the model's default)
# for a retraining/fine-tuning stage; unset = inherited. A stage's ``lr`` is its learning
# rate as given, so it excludes ``lr_factor`` (checked in validate_recipe).
_STAGE_TRAINING: dict[str, tuple[Check, Any]] = {
    "optimizer": (choice("sgd", "adam"), None),
    "lr": (number(0, lo_open=True), None),
    "batch_size": (integer(1), None),
}
_BN = {"recalibrate_bn": (boolean, None)}  # unset = true: recalibrate BatchNorm statistics
# Distillation from the run's dense model while a stage retrains (sparsenet.training.distill):
# the weight of the soft term (unset or 0 = off) and its temperature (unset = 4).
_DISTILL: dict[str, tuple[Check, Any]] = {
    "distill": (number(0), None),
    "distill_temperature": (number(0, lo_open=True), None),
}

# kind -> {key: (check, default)}; default _MISSING = required, None = unset/optional.
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    "train": {
        **_TRAIN_FIELDS,
        "load": (string, None),
        "skip_if_trained": (boolean, True),
    },
    "regularize": {
        "l1": (number(0), 0.0),
        "l2": (number(0), 0.0),
        "group_lasso": (number(0), 0.0),
        "layers": (string_list, None),
        "epochs": (integer(0), 5),
        "lr_factor": (number(0, 1, lo_open=True), 1.0),
        **_STAGE_TRAINING,
        **_DISTILL,
    },
    "prune": {
        "method": (choice("magnitude", "obd", "random", "sparsegpt", "wanda", "obs"), "magnitude"),
        "sparsity": (number(0, 1, lo_open=True, hi_open=True), None),
        "per_layer": (per_layer(number(0, 1, hi_open=True)), None),
        "quality": (number(0, lo_open=True), None),
        "iterations": (integer(1), 1),
        "retrain_epochs": (integer(0), 0),
        "lr_factor": _LR_FACTOR,
        "sensitivity": (boolean, False),
        **_STAGE_TRAINING,
        **_DISTILL,
        **_BN,
        # One-shot criteria with calibration (unset = their defaults: 1024, 128, 0.01).
        "pattern": (pattern_spec, None),
        "calibration": (integer(1), None),
        "blocksize": (integer(1), None),
        "damp": (number(0), None),
    },
    "factorize": {
        "rank": (rank_spec, None),
        "energy": (number(0, 1, lo_open=True), None),
        "budget": (number(0, 1, lo_open=True, hi_open=True), None),
        "finetune_epochs": (integer(0), 0),
        "lr_factor": _LR_FACTOR,
        **_STAGE_TRAINING,
        **_DISTILL,
    },
    "share": {
        # the shared-weight index width (formerly "bits")
        "weight_bits": (parse_bits, {"conv": 8, "fc": 5}),
        "init": (choice("linear", "density", "random", "kmeans++", "optimal"), "linear"),
        "finetune_epochs": (integer(0), 0),
        # A centroid's gradient sums its whole cluster's, so plain SGD at the training lr
        # overshoots; Adam at 1e-3 is sparsenet.share's tested default.
        "optimizer": (choice("adam", "sgd"), "adam"),
        "lr": (number(0, lo_open=True), 1e-3),
        "batch_size": (integer(1), None),
        # unset = true: fold BatchNorm into the preceding layer before sharing
        "fold_bn": (boolean, None),
        **_DISTILL,
        **_BN,
    },
    "encode": {
        "coder": (choice("huffman", "ans"), "huffman"),
        # the sparse index's gap width (formerly "index_bits"). Han: 8 bits for conv gaps,
        # 5 for fc; "auto" picks each layer's smallest file.
        "gap_bits": (index_bits_spec, {"conv": 8, "fc": 5}),
        "out": (string, None),
    },
}
STAGE_KINDS = tuple(SCHEMA)

# Old key -> new key, per stage kind (issue 19): accepted with a DeprecationWarning.
RENAMED_KEYS: dict[str, dict[str, str]] = {
    "share": {"bits": "weight_bits"},
    "encode": {"index_bits": "gap_bits"},
}

# Stages where exactly one of several keys sets the target.
_ONE_OF = {"prune": ("sparsity", "per_layer", "quality"), "factorize": ("rank", "energy", "budget")}

_TOP: dict[str, tuple[Check, Any]] = {
    "name": (string, "recipe"),
    "description": (string, None),
    "seed": (integer(0, MAX_SEED), 0),
    "model": (string, None),
    "data": (string, None),
    "lr": (number(0, lo_open=True), None),
    # Training images held out as the validation split that every stage scores on (the test
    # set is then scored once, at the end); 0 = none, stages score on the test set.
    "holdout": (integer(0), None),
}


@dataclass(frozen=True)
class Stage:
    """One validated stage: its ``kind`` and complete ``settings`` (defaults filled in)."""

    kind: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return self.kind


@dataclass
class Recipe:
    """A validated recipe. Build with :func:`load_recipe` or :func:`validate_recipe`."""

    name: str = "recipe"
    seed: int = 0
    stages: list[Stage] = field(default_factory=list)
    description: str | None = None
    model: str | None = None
    data: str | None = None
    lr: float | None = None
    holdout: int | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The normalised recipe as plain data (what :func:`validate_recipe` accepts back)."""
        top = {k: getattr(self, k) for k in _TOP if getattr(self, k) is not None}
        return {**top, "stages": [{s.kind: dict(s.settings)} for s in self.stages]}

    def digest(self) -> str:
        """SHA-256 of the normalised recipe (minus ``description``), to recognise a run's recipe."""
        d = self.to_dict()
        d.pop("description", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, **changes: Any) -> Recipe:
        """A copy with top-level fields (seed, model, data, lr) replaced and re-validated."""
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return validate_recipe(d, source=self.source)


def _check_table(table: Any, schema: dict[str, tuple[Check, Any]], path: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise fail(path, "a table", table)
    unknown = [k for k in table if k not in schema]
    if unknown:
        known = ", ".join(schema)
        raise RecipeError(f"{path}.{unknown[0]}: unknown key; expected one of: {known}")
    out: dict[str, Any] = {}
    for key, (check, default) in schema.items():
        if key in table:
            out[key] = check(table[key], f"{path}.{key}")
        elif default is _MISSING:
            raise RecipeError(f"{path}.{key}: missing required key")
        elif default is not None:
            out[key] = default
    return out


def validate_recipe(data: dict[str, Any], source: str | None = None) -> Recipe:
    """Check a recipe given as plain data (e.g. parsed TOML) and return a :class:`Recipe`.

    Raises
    ------
    RecipeError naming the key path of the first unknown key or bad value.
    """
    if not isinstance(data, dict):
        raise fail("recipe", "a table", data)
    stages_raw = data.get("stages", _MISSING)
    top = _check_table({k: v for k, v in data.items() if k != "stages"},
                       {**_TOP, "stages": (lambda v, p: v, None)}, "recipe")
    if stages_raw is _MISSING:
        raise RecipeError("stages: missing; expected a list of [[stages]] tables")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise fail("stages", "a non-empty list of [[stages]] tables", stages_raw)
    stages: list[Stage] = []
    for i, entry in enumerate(stages_raw):
        path = f"stages[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            got = list(entry) if isinstance(entry, dict) else entry
            raise fail(path, f"a table with exactly one stage key ({', '.join(STAGE_KINDS)})", got)
        ((kind, table),) = entry.items()
        if kind not in SCHEMA:
            raise RecipeError(
                f"{path}.{kind}: unknown stage; expected one of: {', '.join(STAGE_KINDS)}"
            )
        table = _renamed_keys(table, kind, f"{path}.{kind}")
        settings = _check_table(table, SCHEMA[kind], f"{path}.{kind}")
        if kind in _ONE_OF:
            given = [k for k in _ONE_OF[kind] if k in settings]
            implied = kind == "prune" and not given and settings.get("pattern", "unstructured") != "unstructured"
            if len(given) != 1 and not implied:  # an N:M pattern alone means 1 - N/M
                raise RecipeError(
                    f"{path}.{kind}: expected exactly one of {', '.join(_ONE_OF[kind])}, "
                    f"got {given or 'none'}"
                )
        if "lr" in table and "lr_factor" in table:
            raise RecipeError(
                f"{path}.{kind}.lr: expected either lr (the stage's learning rate) or lr_factor "
                "(a factor on the training lr), not both"
            )
        if "lr" in table and "lr_factor" in settings:
            del settings["lr_factor"]  # the stage's own lr: no default factor either
        if kind == "prune" and settings.get("pattern", "unstructured") != "unstructured":
            _check_pattern_floor(settings, f"{path}.{kind}")
        if kind == "train" and i != 0:
            raise RecipeError(f"{path}.train: the train stage must be the first stage")
        if kind == "encode" and i != len(stages_raw) - 1:
            raise RecipeError(f"{path}.encode: the encode stage must be the last stage")
        stages.append(Stage(kind, settings))
    top.pop("stages", None)
    return Recipe(stages=stages, source=source, **top)


def _renamed_keys(table: Any, kind: str, path: str) -> Any:
    """``table`` with the old names of :data:`RENAMED_KEYS` replaced by the new ones."""
    renames = RENAMED_KEYS.get(kind, {})
    if not isinstance(table, dict) or not any(old in table for old in renames):
        return table
    out = dict(table)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise RecipeError(f"{path}.{old}: the old name of {new}; expected only {new}")
        warnings.warn(f"recipe key {path}.{old} is deprecated; it is now {path}.{new}",
                      DeprecationWarning, stacklevel=4)
        out[new] = out.pop(old)
    return out


def _check_pattern_floor(settings: dict[str, Any], path: str) -> None:
    """An N:M pattern prunes at least 1 - N/M: a smaller sparsity is a contradiction."""
    n, m = (int(x) for x in settings["pattern"].split(":"))
    floor = 1.0 - n / m
    fracs = [("sparsity", settings["sparsity"])] if "sparsity" in settings else []
    fracs += [(f"per_layer.{k}", v) for k, v in settings.get("per_layer", {}).items()]
    for key, f in fracs:
        if f < floor - 1e-12:
            raise RecipeError(
                f"{path}.{key}: expected a sparsity >= {floor:g} (pattern {settings['pattern']}), got {f:g}"
            )
    if "quality" in settings:
        raise RecipeError(f"{path}.quality: a pattern needs sparsity or per_layer, not quality")


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse TOML ``text`` and validate it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML ({exc})") from None
    return validate_recipe(data, source=source)


def builtin_recipes() -> list[str]:
    """Names of the recipes packaged in ``sparsenet/recipes`` (``deep-compression``, ...)."""
    root = resources.files("sparsenet") / "recipes"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _builtin_text(name: str) -> str | None:
    path = resources.files("sparsenet") / "recipes" / f"{name}.toml"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def load_recipe(source: str | os.PathLike[str] | dict[str, Any] | Recipe,
                model: str | None = None) -> Recipe:
    """A :class:`Recipe` from a built-in name, a ``.toml`` path, plain data or a Recipe.

    A built-in name first looks for a model-specific variant ``<name>-<model>`` (for
    example ``deep-compression-lenet5``, with Han's per-layer targets), then ``<name>``.
    """
    if isinstance(source, Recipe):
        return source
    if isinstance(source, dict):
        return validate_recipe(source)
    text_source = os.fspath(source)
    path = Path(text_source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RecipeError(f"{path}: no such recipe file")
        try:
            file_text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(
                f"{path}: not a UTF-8 text file (byte {exc.start}); a recipe is TOML text"
            ) from None
        return parse_recipe(file_text, source=str(path))
    for name in ([f"{text_source}-{model}"] if model else []) + [text_source]:
        text = _builtin_text(name)
        if text is not None:
            return parse_recipe(text, source=f"builtin:{name}")
    raise RecipeError(
        f"unknown recipe {text_source!r}; expected a .toml file or one of {builtin_recipes()}"
    )
