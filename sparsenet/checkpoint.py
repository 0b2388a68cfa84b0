"""Model checkpoints that rebuild themselves: architecture, weight transforms, state.

A checkpoint is a ``torch.save`` dict (loaded with ``weights_only=True``)::

    {"format": "sparsenet-checkpoint", "version": 1,
     "arch": {"name": "lenet300", "kwargs": {...}}     # a registry model
           | {"graph": {...}}                           # any traceable model (sparsenet.graph)
           | None,                                      # untraceable: load with model=
     "transforms": [ {"module": "fc1", "tensor": "weight", "kind": "mask", "args": {...}}, ... ],
     "state_dict": {...}, "metadata": {...}, "train_state": {...}?}

Transforms are how pruning masks, low-rank factors and codebooks survive a save: each
parametrisation class (or module-swap class) sets ``transform_kind`` and ``spec()``, and
registers a rebuild function with :func:`register_transform`. :func:`load_model` builds
the architecture on the ``meta`` device, replays the transforms in order and compares its
tensor shapes with the state dict; only then is the real model built and the state loaded,
so a hostile architecture record allocates nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import CheckpointError, CorruptFileError
from .graph import RecordError, build_graph_module, check_slots_filled, is_graph_arch, record_model
from .io import atomic_torch_save
from .layers import is_inside_parametrization
from .models import arch_of, build_model

__all__ = [
    "FORMAT",
    "VERSION",
    "register_transform",
    "register_parametrization",
    "describe_transforms",
    "apply_transforms",
    "describe_arch",
    "build_architecture",
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


def describe_transforms(model: nn.Module) -> list[dict[str, Any]]:
    """The ordered list of transform entries that rebuild ``model`` from its bare architecture."""
    entries: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        if is_inside_parametrization(name):
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
        try:
            _TRANSFORMS[kind](model, entry)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad entry fails in the rebuild's own way
            raise CheckpointError(
                f"transform {kind!r} on {str(entry.get('module'))[:80]!r} cannot be replayed "
                f"({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
    return model


def _import_transform_providers() -> None:
    """Import the modules that register transforms, so a bare ``load_model`` knows them all."""
    import importlib

    # Imported here, not at the top: each of them imports this module to register its kinds.
    for mod in ("sparsenet.prune", "sparsenet.lowrank", "sparsenet.share", "sparsenet.regularize",
                "sparsenet.bn"):
        importlib.import_module(mod)


def describe_arch(model: nn.Module, required: bool = True) -> dict[str, Any] | None:
    """The ``arch`` entry of a file: the registry record, else ``{"graph": record}``.

    A model torch.fx cannot record raises :class:`~sparsenet.graph.RecordError` naming the
    reason, or gives ``None`` (a file that loads only with ``model=``) when not ``required``.
    """
    arch = arch_of(model)
    if arch is not None:
        return arch
    try:
        return {"graph": record_model(model)}
    except RecordError:
        if required:
            raise
        return None
    except Exception:  # a checkpoint mid-training must never fail on the record alone
        if required:
            raise
        return None


def _check_arch(arch: Any, source: str) -> None:
    if is_graph_arch(arch):
        return
    if not (
        isinstance(arch, dict)
        and isinstance(arch.get("name"), str)
        and isinstance(arch.get("kwargs", {}), dict)
        and all(isinstance(k, str) for k in arch.get("kwargs", {}))
    ):
        raise CheckpointError(
            f"{source}: arch {str(arch)[:80]} is not {{'name': str, 'kwargs': dict}} or "
            "{'graph': record}"
        )


def _check_transforms(transforms: Any, source: str) -> None:
    ok = isinstance(transforms, list) and all(
        isinstance(e, dict)
        and isinstance(e.get("module"), str)
        and isinstance(e.get("kind"), str)
        and isinstance(e.get("args", {}), dict)
        and isinstance(e.get("tensor", ""), str)
        for e in transforms
    )
    if not ok:
        raise CheckpointError(
            f"{source}: transforms {str(transforms)[:80]} is not a list of "
            "{'module': str, 'kind': str, 'args': dict} entries"
        )


def build_architecture(arch: Any, transforms: Any, source: str = "checkpoint") -> nn.Module:
    """The bare model an ``arch`` entry records, with ``transforms`` replayed.

    Builds under the caller's device context (``torch.device("meta")`` to check shapes).
    Raises :class:`CheckpointError` (or :class:`~sparsenet.errors.CorruptFileError` from a
    graph record) naming what is wrong.
    """
    _check_arch(arch, source)
    _check_transforms(transforms, source)
    if is_graph_arch(arch):
        model: nn.Module = build_graph_module(arch["graph"])
    else:
        try:
            model = build_model(arch["name"], **arch.get("kwargs", {}))
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile kwargs fail in the constructor
            raise CheckpointError(
                f"{source}: architecture {str(arch)[:100]} cannot be built ({str(exc)[:120]})"
            ) from None
    _replay(model, transforms, source)
    check_slots_filled(model, source)
    return model


def _replay(model: nn.Module, transforms: list[dict[str, Any]], source: str) -> None:
    try:
        apply_transforms(model, transforms)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def model_payload(model: nn.Module) -> dict[str, Any]:
    """The architecture, transforms and state dict of ``model`` as a picklable dict.

    ``arch`` is the registry record, the graph record of a traceable custom model, or None.
    """
    return {
        "arch": describe_arch(model, required=False),
        "transforms": describe_transforms(model),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def model_from_payload(
    payload: dict[str, Any], model: nn.Module | None = None, source: str = "checkpoint"
) -> nn.Module:
    """Rebuild a model from :func:`model_payload` output (or load into a given bare ``model``)."""
    transforms = payload.get("transforms", [])
    _check_transforms(transforms, source)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{source}: state_dict is not a dict of named tensors")
    if model is None:
        arch = payload.get("arch")
        if not arch:
            raise CheckpointError(
                f"{source}: no architecture recorded (a custom model torch.fx could not "
                "record); pass the model to load into"
            )
        try:
            with torch.device("meta"):  # hostile sizes allocate nothing
                shapes = _shapes(build_architecture(arch, transforms, source).state_dict())
        except CorruptFileError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        if shapes != _shapes(state):
            diff = sorted(set(shapes.items()) ^ set(_shapes(state).items()))[:3]
            raise CheckpointError(
                f"{source}: state does not match the architecture (e.g. {str(diff)[:200]})"
            )
        model = build_architecture(arch, transforms, source)
    else:
        _replay(model, transforms, source)
    try:
        model.load_state_dict(state)
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
    from .integrity import verify_checkpoint_zip

    verify_checkpoint_zip(p)  # torch.load does not check the zip CRCs: a flipped byte loads
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
    if not isinstance(ckpt.get("metadata", {}), dict):
        raise CheckpointError(f"{p}: metadata is a {type(ckpt['metadata']).__name__}, expected a dict")
    if ckpt.get("arch") is not None:
        _check_arch(ckpt["arch"], str(p))
    _check_transforms(ckpt.get("transforms", []), str(p))
    return ckpt


def load_model(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint; returns ``(model, metadata)``. ``model`` is needed for custom models."""
    ckpt = load_checkpoint(path)
    m = model_from_payload(ckpt, model, source=str(path))
    m.eval()
    return m, dict(ckpt.get("metadata", {}))
