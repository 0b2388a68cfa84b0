"""Where a model comes from: one string (what ``--model`` takes) -> ``(module, metadata)``.

A *model source* is one of

- a registry name (``lenet300``, ``lenet5``): a freshly built model;
- a model file, read by :func:`sparsenet.load`: a sparsenet checkpoint (``.pt``), a
  compressed model (``.snn``, recognised by its magic bytes) or a ``torch.export`` archive
  (``.pt2``, read by :mod:`sparsenet.pt2` without unpickling);
- ``package.module:factory``: the factory is imported and called with no arguments.

``weights`` (``--weights state_dict.pt``) goes with a registry name or a factory: a
``torch.save``'d state dict, read with ``weights_only=True`` and loaded strictly. Importing
the factory's module runs the user's code: it is named on the user's own command line, and
nothing is imported because a *file* says so. Every problem raises
:class:`ModelSourceError` with one line naming the source and what is wrong.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelSourceError
from .loading import file_kind, load
from .models import MODELS, build_model

__all__ = ["ModelSourceError", "load_model_source", "load_weights", "source_kind"]

_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def source_kind(spec: str) -> str:
    """``"snn"``, ``"pt2"``, ``"checkpoint"``, ``"factory"`` or ``"registry"`` (or raise)."""
    p = Path(spec)
    if p.is_file():
        return file_kind(p)
    if p.is_dir():
        raise ModelSourceError(f"{spec}: is a directory, expected a model file")
    if spec in MODELS:
        return "registry"
    if _FACTORY.match(spec):
        return "factory"
    raise ModelSourceError(
        f"{spec}: no such file, not a registry model ({', '.join(sorted(MODELS))}) and not "
        "package.module:factory"
    )


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` (or a sparsenet checkpoint's), weights only."""
    p = Path(path)
    if not p.is_file():
        raise ModelSourceError(f"--weights {p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: not a weights file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelSourceError(f"--weights {p}: not a weights-only state dict ({first[:160]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ModelSourceError(f"--weights {p}: not a dict of named tensors (a state dict)")
    return obj


def _fit_weights(model: nn.Module, state: dict[str, torch.Tensor], what: str, wpath: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape {wrong[:2]}")
        raise ModelSourceError(f"--weights {wpath} do not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state)


def _factory(spec: str) -> nn.Module:
    mod_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # like `python -m`, the user's own modules in the current directory
        sys.path.append(cwd)
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may fail in any way
        raise ModelSourceError(
            f"{spec}: cannot import {mod_name} ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ModelSourceError(f"{spec}: {mod_name} has no attribute {attr}")
    if not callable(fn):
        raise ModelSourceError(f"{spec}: {attr} is not callable")
    try:
        model = fn()
    except Exception as exc:  # noqa: BLE001 - the user's factory may fail in any way
        raise ModelSourceError(
            f"{spec}: calling {attr}() failed ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{spec}: {attr}() returned a {type(model).__name__}, not an nn.Module")
    return model


def load_model_source(
    spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve a model source (see the module docstring); returns ``(model, metadata)``.

    Raises
    ------
    ModelSourceError
        Unknown source, a factory that cannot be imported or called, weights that do not fit.
    CheckpointError, CorruptFileError
        A model file that is not valid.
    """
    spec = os.fspath(spec)
    kind = source_kind(spec)
    if weights is not None and kind not in ("registry", "factory"):
        raise ModelSourceError(
            f"--weights goes with a registry name or package.module:factory, not a {kind} "
            f"file ({spec} holds its own weights)"
        )
    meta: dict[str, Any] = {}
    if kind in ("snn", "checkpoint", "pt2"):
        return load(spec, with_metadata=True)
    if kind == "registry":
        model = build_model(spec)
    else:
        model = _factory(spec)
        meta["source"] = spec
    if weights is not None:
        _fit_weights(model, load_weights(weights), spec, os.fspath(weights))
        meta["weights"] = os.fspath(weights)
    return model.eval(), meta
