"""The run directory's file names and its ``manifest.json``, checked before anything trusts it.

One module for the naming rules that the runner (which writes a run directory) and
:mod:`sparsenet.report` (which reads one) share: :data:`MANIFEST`, :func:`stage_checkpoint`
(``stages/initial.pt``, ``stages/NN-<kind>.pt``), :data:`STAGE_FILE` and :func:`read_manifest`.

The manifest is a file in the user's directory: it can be truncated, edited by hand or
written by another program. :func:`validate_manifest` checks every field that
``--resume`` and ``sparsenet report`` read, so a bad one gives one :class:`RunError` /
:class:`ManifestError` message naming the field, never a ``KeyError`` or a division by
zero later.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from ..errors import SparsenetError
from .checks import RecipeError
from .recipe import STAGE_KINDS

__all__ = [
    "MANIFEST",
    "RUN_FORMAT",
    "STAGE_FILE",
    "ManifestError",
    "RunError",
    "read_manifest",
    "stage_checkpoint",
    "validate_manifest",
]

MANIFEST = "manifest.json"
RUN_FORMAT = "sparsenet-run"  # the manifest's "format" field
# A stage's checkpoint (.pt) and its record (.json: the manifest entry it was saved with).
STAGE_FILE = re.compile(
    r"^(initial\.pt|\d{2}-(" + "|".join(map(re.escape, STAGE_KINDS)) + r")\.(pt|json))$")


class RunError(SparsenetError):
    """A run directory cannot be used as asked (already holds a run, other recipe, corrupt)."""


def stage_checkpoint(run_dir: str | os.PathLike[str], index: int | None, kind: str = "") -> Path:
    """The checkpoint of stage ``index`` (of ``kind``) in ``run_dir``; ``index=None``: the
    model the run started from (``stages/initial.pt``)."""
    if index is None:
        return Path(run_dir) / "stages" / "initial.pt"
    return Path(run_dir) / "stages" / f"{index:02d}-{kind}.pt"


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a run directory, checked for format and every field (see module doc).

    Raises
    ------
    RunError
        No manifest, not JSON, or not a sparsenet run manifest.
    ManifestError
        A field that resume or the report reads is missing or of the wrong type.
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise RunError(f"{path}: not a sparsenet run manifest")
    return validate_manifest(manifest, str(path), STAGE_KINDS)


class ManifestError(RecipeError):
    """A run manifest is missing a field or has a bad value (the message names the field)."""


def _bad(where: str, field: str, expected: str, got: Any) -> ManifestError:
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return ManifestError(f"{where}: corrupt manifest, {field}: expected {expected}, got {shown}")


def _num(d: dict[str, Any], key: str, where: str, field: str, positive: bool = False) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (positive and v <= 0):
        raise _bad(where, f"{field}.{key}", "a number > 0" if positive else "a finite number", v)


def _metrics(m: Any, where: str, field: str) -> None:
    if not isinstance(m, dict):
        raise _bad(where, field, "a table of metrics", m)
    for key in ("accuracy", "density"):  # NaN (an empty test split) is allowed
        v = m.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(where, f"{field}.{key}", "a number", v)
    for key in ("bytes", "dense_bytes"):
        _num(m, key, where, field, positive=True)
    layers = m.get("layers")
    if not isinstance(layers, list):
        raise _bad(where, f"{field}.layers", "a list", layers)
    for j, lay in enumerate(layers):
        f = f"{field}.layers[{j}]"
        if not isinstance(lay, dict) or not isinstance(lay.get("name"), str):
            raise _bad(where, f, "a table with a name", lay)
        for key in ("weights", "density", "weight_bits", "index_bits", "bits"):
            _num(lay, key, where, f)
        _num(lay, "dense_bits", where, f, positive=True)


def validate_manifest(man: Any, where: str, stage_kinds: tuple[str, ...]) -> dict[str, Any]:
    """Return ``man`` if every field that resume and report read is present and well-typed.

    Raises
    ------
    ManifestError naming the first bad field.
    """
    if not isinstance(man, dict):
        raise _bad(where, "manifest", "a JSON object", man)
    recipe = man.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), list):
        raise _bad(where, "recipe", "a table with a stages list", recipe)
    initial = man.get("initial")
    if not isinstance(initial, dict):
        raise _bad(where, "initial", "a table", initial)
    if not isinstance(initial.get("source"), str):
        raise _bad(where, "initial.source", "a string", initial.get("source"))
    if not isinstance(initial.get("pretrained"), bool):
        raise _bad(where, "initial.pretrained", "true or false", initial.get("pretrained"))
    _metrics(initial.get("metrics"), where, "initial.metrics")
    stages = man.get("stages")
    if not isinstance(stages, list):
        raise _bad(where, "stages", "a list", stages)
    for i, e in enumerate(stages):
        f = f"stages[{i}]"
        if not isinstance(e, dict):
            raise _bad(where, f, "a table", e)
        idx = e.get("index")
        if isinstance(idx, bool) or idx != i:
            raise _bad(where, f"{f}.index", f"the integer {i}", idx)
        if e.get("kind") not in stage_kinds:
            raise _bad(where, f"{f}.kind", f"one of {', '.join(stage_kinds)}", e.get("kind"))
        if e.get("status") not in ("running", "done", "failed", "interrupted"):
            raise _bad(where, f"{f}.status", "running, done, failed or interrupted",
                       e.get("status"))
        if e.get("record") is not None and not isinstance(e["record"], dict):
            raise _bad(where, f"{f}.record", "a table", e["record"])
        if e.get("seconds") is not None:
            _num(e, "seconds", where, f)
        if e["status"] == "done":
            _metrics(e.get("metrics"), where, f"{f}.metrics")
    return man
