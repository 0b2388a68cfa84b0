"""Model -> ``.snn``: gather each tensor's effective value, encode weights, write the file."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import describe_arch, describe_transforms
from ..errors import SparsenetError
from ..layers import (
    LayerTensor,
    compressible_tensors,
    is_inside_parametrization,
    layer_kind,
    lookup,
    parse_bits_spec,
    resolve_table,
)
from ..renamed import renamed_argument
from .codec import CODERS, LayerCode, encode_layer
from .container import write_snn

__all__ = [
    "DEFAULT_WEIGHT_BITS",
    "DEFAULT_GAP_BITS",
    "AUTO_GAP_BITS",
    "DEFAULT_BITS",
    "DEFAULT_INDEX_BITS",
    "AUTO_INDEX_BITS",
    "parse_bits",
    "bits_for",
    "layer_kind",
    "effective_tensors",
    "codebook_of",
    "encode_model",
    "save_snn",
]

# Shared-weight index widths (weight_bits) and sparse-index gap widths (gap_bits) by group;
# attention and embedding tensors take the fc value (sparsenet.layers.FALLBACK).
DEFAULT_WEIGHT_BITS = {"conv": 8, "fc": 5}
DEFAULT_GAP_BITS = {"conv": 8, "fc": 5}
# gap_bits="auto" tries every gap width here per pruned layer and keeps the smallest file:
# narrow gaps need filler entries on long runs of zeros, wide ones a larger alphabet.
AUTO_GAP_BITS = range(2, 13)
# The names before issue 19 (bits -> weight_bits, index_bits -> gap_bits).
DEFAULT_BITS, DEFAULT_INDEX_BITS, AUTO_INDEX_BITS = DEFAULT_WEIGHT_BITS, DEFAULT_GAP_BITS, AUTO_GAP_BITS


def parse_bits(spec: str | int | dict[str, int] | None, default: dict[str, int]) -> dict[str, int]:
    """A bits spec (:func:`sparsenet.layers.parse_bits_spec`: ``"conv=8,fc=5"``, an int, a
    dict; keys are groups, names or globs), validated. ``None`` gives ``default``.

    Look a tensor up with :func:`bits_for`, which falls back to ``default`` for what the
    spec does not cover.
    """
    if spec is None:
        return dict(default)
    return parse_bits_spec(spec)


def bits_for(
    t: LayerTensor, table: dict[str, int], default: dict[str, int] = DEFAULT_BITS
) -> int:
    """The bits of tensor ``t``: the most specific key of ``table``, else of ``default``."""
    b = lookup(t, table)
    if b is None:
        b = lookup(t, default)
    assert b is not None, f"default {default} covers no kind {t.kind!r}"
    return b


def effective_tensors(model: nn.Module) -> dict[str, tuple[nn.Module, str, str, torch.Tensor]]:
    """Every persistent parameter and buffer as seen through parametrisations.

    Returns ``{"fc1.weight": (module, "fc1", "weight", tensor), ...}`` in module order; the
    keys are the state-dict keys of the same model without parametrisations.
    """
    out: dict[str, tuple[nn.Module, str, str, torch.Tensor]] = {}
    for mname, m in model.named_modules():
        if is_inside_parametrization(mname):
            continue
        names = [n for n, p in m._parameters.items() if p is not None]
        if parametrize.is_parametrized(m):
            names += list(m.parametrizations.keys())  # type: ignore[union-attr]
        names += [
            n
            for n, b in m._buffers.items()
            if b is not None and n not in m._non_persistent_buffers_set
        ]
        for n in names:
            key = f"{mname}.{n}" if mname else n
            out[key] = (m, mname, n, getattr(m, n).detach())
    return out


def codebook_of(module: nn.Module, tensor: str) -> tuple[torch.Tensor, int] | None:
    """``(centroids, bits)`` of a weight-sharing parametrisation on ``module.tensor``, if any."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    for p in module.parametrizations[tensor]:  # type: ignore[index,union-attr]
        if hasattr(p, "centroids") and hasattr(p, "bits") and hasattr(p, "indices"):
            return p.centroids.detach(), int(p.bits)
    return None


def encode_model(
    model: nn.Module,
    coder: str = "huffman",
    weight_bits: str | dict[str, int] | None = None,
    gap_bits: str | dict[str, int] | None = None,
    layout: str = "auto",
    *,
    bits: str | dict[str, int] | None = None,
    index_bits: str | dict[str, int] | None = None,
) -> tuple[list[LayerCode], dict[str, torch.Tensor]]:
    """Encode every compressible tensor (:mod:`sparsenet.layers`); other tensors are kept raw.

    The codebook of a layer is its weight-sharing parametrisation's centroids when one is
    present, else the sorted unique non-zero weights when there are at most
    ``2**weight_bits``; otherwise the layer is stored raw (float32 at its non-zeros, or
    fully dense). ``weight_bits`` and ``gap_bits`` are as for :func:`save_snn`; ``bits``
    and ``index_bits`` are their deprecated names.
    """
    bits = renamed_argument("encode_model", "weight_bits", weight_bits, "bits", bits)
    index_bits = renamed_argument("encode_model", "gap_bits", gap_bits, "index_bits", index_bits)
    if coder not in CODERS:
        raise SparsenetError(f"unknown coder {coder!r}; expected one of {sorted(CODERS)}")
    wbits = parse_bits(bits, DEFAULT_WEIGHT_BITS)
    auto = index_bits == "auto"
    ibits = parse_bits(None if auto else index_bits, DEFAULT_GAP_BITS)
    layers: list[LayerCode] = []
    raw: dict[str, torch.Tensor] = {}
    tensors = compressible_tensors(model)
    for spec, table in ((bits, wbits), (None if auto else index_bits, ibits)):
        if spec is not None:
            resolve_table(tensors, table, what="bits spec")  # a name or glob must select something
    compressible = {t.key: t for t in tensors}
    for key, (module, _mname, tname, t) in effective_tensors(model).items():
        lt = compressible.get(key)
        if lt is None or t.dtype != torch.float32:
            raw[key] = t.clone()
            continue
        cb = codebook_of(module, tname)
        b = cb[1] if cb is not None else bits_for(lt, wbits, DEFAULT_WEIGHT_BITS)
        ib = bits_for(lt, ibits, DEFAULT_GAP_BITS)
        lc = encode_layer(  # the codec and the file header keep the old field names
            key, lt.kind, t.cpu().numpy(), bits=b, index_bits=AUTO_GAP_BITS if auto else ib,
            coder=coder, centroids=None if cb is None else cb[0].cpu().numpy(), layout=layout,
        )
        layers.append(lc)
    return layers, raw


def save_snn(
    model: nn.Module,
    path: str | os.PathLike[str],
    coder: str = "huffman",
    weight_bits: str | dict[str, int] | None = None,
    gap_bits: str | dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    layout: str = "auto",
    record_arch: bool = True,
    *,
    bits: str | dict[str, int] | None = None,
    index_bits: str | dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write ``model`` as a ``.snn`` file; returns the size report (see :mod:`.accounting`).

    Parameters
    ----------
    model : nn.Module
        A registry model (``model.arch``, stored as its name and kwargs) or any model
        torch.fx can trace over whitelisted layers and ops (stored as a graph record, see
        :mod:`sparsenet.graph`), possibly pruned (zeros), shared (a codebook
        parametrisation or few distinct values) and module-swapped (low rank...).
    coder : "huffman" or "ans"
    weight_bits : "conv=8,fc=5", an int, or dict
        Shared-weight index width per group (fc, conv, embedding, attention, all), tensor
        name or glob (a parametrisation's own ``bits`` wins); attention and embedding take
        the fc value unless given their own. (Formerly ``bits``.)
    gap_bits : "conv=8,fc=5", an int, dict or "auto"
        Gap width of the sparse index (Deep Compression: 8 for conv, 5 for fc); ``"auto"``
        picks, per pruned layer, the width in :data:`AUTO_GAP_BITS` giving the fewest bytes.
        (Formerly ``index_bits``.)
    metadata : dict, optional
        JSON-able; stored in the header (e.g. ``{"dataset": "fashion-mnist"}``).
    layout : "auto" or "sparse"
        ``"auto"``: per layer, the smallest of the applicable storage modes;
        ``"sparse"``: Deep Compression's gap + index layout for every pruned layer.
    record_arch : bool
        A custom model that cannot be recorded raises
        :class:`~sparsenet.graph.RecordError` (before any encoding); ``False`` writes it
        without an architecture instead (it then loads only with ``model=``).
    bits, index_bits :
        Deprecated names of ``weight_bits`` and ``gap_bits`` (a DeprecationWarning).

    The file's header records each layer's widths under its format's field names,
    ``bits`` and ``index_bits`` (docs/coding.md).
    """
    bits = renamed_argument("save_snn", "weight_bits", weight_bits, "bits", bits)
    index_bits = renamed_argument("save_snn", "gap_bits", gap_bits, "index_bits", index_bits)
    from .accounting import size_report
    from .container import SnnFile

    arch = describe_arch(model, required=record_arch)
    swaps = [e for e in describe_transforms(model) if "tensor" not in e]
    layers, raw = encode_model(model, coder, bits, index_bits, layout)
    info = {"arch": arch, "transforms": swaps, "coder": coder, "metadata": dict(metadata or {})}
    size = write_snn(path, layers, raw, info)
    return size_report(SnnFile(info, layers, raw, size))
