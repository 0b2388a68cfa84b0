"""Model checkpoints that rebuild themselves: architecture, weight transforms, state.

A checkpoint is a ``torch.save`` dict (loaded with ``weights_only=True``)::

    {"format": "sparsenet-checkpoint", "version": 1,
     "arch": {"name": "lenet300", "kwargs": {...}} | None,
     "transforms": [ {"module": "fc1", "tensor": "weight", "kind": "mask", "args": {...}}, ... ],
     "state_dict": {...}, "metadata": {...}, "train_state": {...}?}

Transforms are how pruning masks, low-rank factors and codebooks survive a save: each
parametrisation class (or module-swap class) sets ``transform_kind`` and ``spec()``, and
registers a rebuild function with :func:`register_transform`. :func:`load_model` builds
the architecture, replays the transforms in order, then loads the state dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import CheckpointError
from .io import atomic_torch_save
from .models import arch_of, build_model

__all__ = [
    "FORMAT",
    "VERSION",
    "register_transform",
    "register_parametrization",
    "describe_transforms",
    "apply_transforms",
    "model_payload",
    "model_from_payload",
    "save_model",
    "load_checkpoint",
    "load_model",
]

FORMAT = "sparsenet-checkpoint"
VERSION = 1

TransformFn = Callable[[nn.Module, dict[str, Any]], None]
_TRANSFORMS: dict[str, TransformFn] = {}


def register_transform(kind: str) -> Callable[[TransformFn], TransformFn]:
    """Decorator: register ``fn(model, entry)`` that re-applies a transform of ``kind``."""

    def deco(fn: TransformFn) -> TransformFn:
        _TRANSFORMS[kind] = fn
        return fn

    return deco


def register_parametrization(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator for a parametrisation with ``transform_kind``, ``spec()`` and ``from_spec``.

    Registers a rebuild that does ``parametrize.register_parametrization(module, tensor,
    cls.from_spec(args), unsafe=True)``; the state dict then fills in its tensors, so
    ``from_spec`` only needs to create buffers and parameters of the right shapes.
    """
    kind: str = cls.transform_kind  # type: ignore[attr-defined]

    def rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
        module = model.get_submodule(entry["module"])
        p = cls.from_spec(entry["args"])  # type: ignore[attr-defined]
        parametrize.register_parametrization(module, entry["tensor"], p, unsafe=True)

    _TRANSFORMS[kind] = rebuild
    return cls


def _is_inside_parametrization(name: str) -> bool:
    return name.startswith("parametrizations.") or ".parametrizations." in name


def describe_transforms(model: nn.Module) -> list[dict[str, Any]]:
    """The ordered list of transform entries that rebuild ``model`` from its bare architecture."""
    entries: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        if _is_inside_parametrization(name):
            continue
        kind = getattr(type(module), "transform_kind", None)
        if kind is not None and name:
            entries.append({"module": name, "kind": kind, "args": module.spec()})  # type: ignore[operator]
        if parametrize.is_parametrized(module):
            for tensor, plist in module.parametrizations.items():  # type: ignore[union-attr]
                for p in plist:
                    pkind = getattr(type(p), "transform_kind", None)
                    if pkind is None:
                        raise CheckpointError(
                            f"{name}.{tensor}: parametrization {type(p).__name__} has no "
                            "transform_kind/spec(), so a checkpoint could not rebuild it"
                        )
                    entries.append(
                        {"module": name, "tensor": tensor, "kind": pkind, "args": p.spec()}
                    )
    return entries


def apply_transforms(model: nn.Module, entries: list[dict[str, Any]]) -> nn.Module:
    """Replay transform ``entries`` (from :func:`describe_transforms`) on a fresh model."""
    for entry in entries:
        kind = entry.get("kind")
        if kind not in _TRANSFORMS:
            _import_transform_providers()
        if kind not in _TRANSFORMS:
            raise CheckpointError(
                f"unknown transform kind {kind!r} on {entry.get('module')!r}; known: {sorted(_TRANSFORMS)}"
            )
        _TRANSFORMS[kind](model, entry)
    return model


def _import_transform_providers() -> None:
    """Import the modules that register transforms, so a bare ``load_model`` knows them all."""
    import importlib

    for mod in ("sparsenet.prune", "sparsenet.lowrank", "sparsenet.share", "sparsenet.regularize"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def model_payload(model: nn.Module) -> dict[str, Any]:
    """The architecture, transforms and state dict of ``model`` as a picklable dict."""
    return {
        "arch": arch_of(model),
        "transforms": describe_transforms(model),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def model_from_payload(
    payload: dict[str, Any], model: nn.Module | None = None, source: str = "checkpoint"
) -> nn.Module:
    """Rebuild a model from :func:`model_payload` output (or load into a given bare ``model``)."""
    if model is None:
        arch = payload.get("arch")
        if not arch:
            raise CheckpointError(
                f"{source}: no architecture recorded (a custom model); pass the model to load into"
            )
        model = build_model(arch["name"], **arch.get("kwargs", {}))
    apply_transforms(model, payload.get("transforms", []))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{source}: state does not match the architecture: {exc}") from None
    return model


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (with its transforms) atomically to ``path``."""
    ckpt: dict[str, Any] = {"format": FORMAT, "version": VERSION, **model_payload(model)}
    ckpt["metadata"] = dict(metadata or {})
    if train_state is not None:
        ckpt["train_state"] = train_state
    return atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint dict, raising :class:`CheckpointError` on any problem."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a sparsenet checkpoint (torch.load with weights_only=True refused it: {reason.split('. ')[0][:120]}); sparsenet never loads pickled code") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a sparsenet checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {ckpt.get('version')!r}, expected {VERSION}"
        )
    return ckpt


def load_model(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint; returns ``(model, metadata)``. ``model`` is needed for custom models."""
    ckpt = load_checkpoint(path)
    m = model_from_payload(ckpt, model, source=str(path))
    m.eval()
    return m, dict(ckpt.get("metadata", {}))
