"""One loader for every model file: :func:`load` reads ``.snn``, ``.pt`` and ``.pt2`` alike.

The kind is read from the file's first bytes (the ``.snn`` magic) and its suffix
(``.pt2``); anything else is a sparsenet checkpoint. Nothing is ever unpickled: checkpoints
are read with ``weights_only=True``, ``.snn`` and ``.pt2`` files as bytes and JSON.

The file's metadata (data set, accuracy, training config, pipeline record...) is returned
with ``with_metadata=True`` and is always on the model as ``model.sparsenet_meta``
(:data:`META_ATTR`), a plain ``dict``::

    model = sparsenet.load("lenet300.snn")                       # nn.Module, eval mode
    sparse = sparsenet.load("lenet300.snn", runtime="sparse")    # compiled sparse plan
    model, meta = sparsenet.load("lenet300.pt", with_metadata=True)
    model.sparsenet_meta is meta                                 # True
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal, overload

from torch import nn

from .checkpoint import load_model as _load_checkpoint
from .coding.container import is_snn_header, read_snn
from .errors import SparsenetError
from .inference import RUNTIMES, build_model_from_snn
from .pt2 import load_pt2

__all__ = ["META_ATTR", "FILE_KINDS", "file_kind", "load", "load_model"]

META_ATTR = "sparsenet_meta"
FILE_KINDS = ("snn", "checkpoint", "pt2")


def file_kind(path: str | os.PathLike[str]) -> str:
    """``"snn"`` (magic bytes or suffix), ``"pt2"`` (suffix) or ``"checkpoint"`` (anything else).

    A path that is not a readable file is classified by its suffix alone; its reader then
    reports it (``CorruptFileError`` for ``.snn``, ``CheckpointError`` for a checkpoint).
    """
    p = Path(path)
    head = b""
    if p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(16)
    if is_snn_header(head) or p.suffix == ".snn":  # a bad .snn gets the .snn checks' error
        return "snn"
    if p.suffix == ".pt2":
        return "pt2"
    return "checkpoint"


@overload
def load(
    path: str | os.PathLike[str],
    model: nn.Module | None = ...,
    runtime: str = ...,
    with_metadata: Literal[False] = ...,
    threads: int | None = ...,
) -> nn.Module: ...


@overload
def load(
    path: str | os.PathLike[str],
    model: nn.Module | None = ...,
    runtime: str = ...,
    *,
    with_metadata: Literal[True],
    threads: int | None = ...,
) -> tuple[nn.Module, dict[str, Any]]: ...


def load(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    runtime: str = "dense",
    with_metadata: bool = False,
    threads: int | None = None,
) -> nn.Module | tuple[nn.Module, dict[str, Any]]:
    """Load a model file as a runnable module in eval mode.

    Parameters
    ----------
    path : a ``.snn`` (:func:`sparsenet.save_snn`), a checkpoint ``.pt``
        (:func:`sparsenet.save_model`) or a ``torch.export`` archive ``.pt2``.
    model : nn.Module, optional
        A bare model to fill, for files that record no architecture (``record_arch=False``)
        or to get your own class back.
    runtime : "dense" or "sparse"
        ``"dense"``: ordinary layers whose logits are bit-identical (float32) to the model
        that was saved. ``"sparse"`` (``.snn`` only): layers compute from codebook indices
        plus column deltas as one compiled plan (see :mod:`sparsenet.inference`).
    with_metadata : bool
        Return ``(model, metadata)`` instead of the model.
    threads : int, optional
        ``runtime="sparse"``: threads for batches >= 16 (default ``torch.get_num_threads()``).

    Returns
    -------
    nn.Module, or ``(nn.Module, dict)`` with ``with_metadata=True``. Either way the
    metadata dict is also ``model.sparsenet_meta``.

    Raises
    ------
    SparsenetError
        An unknown ``runtime``, or ``runtime="sparse"`` for a file that is not a ``.snn``.
    CheckpointError, CorruptFileError
        A missing file, or one that is not valid (truncated, corrupted, another version,
        hostile); :class:`~sparsenet.errors.ModelSourceError` for a bad ``.pt2``.
    """
    if runtime not in RUNTIMES:
        raise SparsenetError(f"runtime={runtime!r}; expected one of {RUNTIMES}")
    source = os.fspath(path)
    kind = file_kind(path)
    if runtime != "dense" and kind != "snn":
        raise SparsenetError(
            f"{source}: runtime={runtime!r} needs a .snn file, this is a {kind}; "
            "expected runtime='dense' (or save it with sparsenet.save_snn first)"
        )
    meta: dict[str, Any]
    if kind == "snn":
        snn = read_snn(path)
        loaded = build_model_from_snn(snn, runtime, model, source=source, threads=threads)
        meta = snn.metadata
    elif kind == "pt2":
        if model is not None:
            raise SparsenetError(f"{source}: a .pt2 archive builds its own module; expected model=None")
        loaded, meta = load_pt2(path), {"source": source}
    else:
        loaded, meta = _load_checkpoint(path, model)
    setattr(loaded, META_ATTR, meta)
    return (loaded, meta) if with_metadata else loaded


def load_model(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Deprecated: ``sparsenet.load(path, model, with_metadata=True)``."""
    warnings.warn(
        "sparsenet.load_model(path) is deprecated; use sparsenet.load(path, with_metadata=True)",
        DeprecationWarning,
        stacklevel=2,
    )
    return load(path, model, with_metadata=True)
