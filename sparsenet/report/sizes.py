"""Storage accounting per layer, as in Deep Compression's Tables 2–3.

Sizes are computed from a model's *effective* weights and its transform specs, so they
apply to any stage's model: dense, pruned (mask), shared (codebook) or both.

* dense layer: 32 bits per weight;
* pruned layer (any exact zero): Han's relative-index format: each non-zero stores its
  value and the gap to the previous non-zero in ``index_bits`` (8 conv, 5 fc); a gap
  larger than ``2**index_bits`` costs a filler entry (a stored zero);
* shared layer (a ``codebook`` transform with ``bits``): each stored value is a
  ``bits``-bit cluster index, plus a codebook of ``2**bits`` float32 centroids;
* biases: 32 bits each.

The entropy bound replaces the fixed-width value and gap symbols by their order-0
empirical entropy: what an ideal per-layer entropy coder (Huffman, ANS) could approach.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..layers import LayerTensor, compressible_tensors, lookup

__all__ = ["model_size", "layer_symbols", "entropy_bits", "index_bits_of", "INDEX_BITS"]

# Gap bits per group; attention and embedding tensors take fc's (sparsenet.layers.FALLBACK).
INDEX_BITS = {"conv": 8, "fc": 5}


def index_bits_of(t: LayerTensor) -> int:
    """Han's gap bits for tensor ``t``: :data:`INDEX_BITS` of its kind (or fallback kind)."""
    b = lookup(t, INDEX_BITS)
    assert b is not None
    return b


def entropy_bits(symbols: np.ndarray) -> float:
    """Total order-0 entropy of an integer array in bits: ``n · H(p̂)``."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def _shared_bits(module: nn.Module, tensor: str = "weight") -> int | None:
    if not parametrize.is_parametrized(module, tensor):
        return None
    for p in module.parametrizations[tensor]:  # type: ignore[union-attr,index]
        if getattr(type(p), "transform_kind", None) == "codebook":
            bits = getattr(p, "bits", None)
            if bits is None and hasattr(p, "centroids"):
                bits = int(np.ceil(np.log2(max(p.centroids.numel(), 2))))
            return int(bits) if bits is not None else None
    return None


def layer_symbols(weight: torch.Tensor, index_bits: int) -> dict[str, np.ndarray]:
    """The symbol streams of a layer in Han's sparse format, row-major over ``weight``.

    Returns
    -------
    dict with ``gaps`` (entries,) int64: distance to the previous stored entry, in
    [1, 2**index_bits], fillers included; ``values`` (entries,) int64: index of each stored
    value among the layer's distinct non-zero values (0 for a filler, ≥ 1 otherwise);
    ``fillers``: number of filler entries.
    """
    flat = weight.detach().reshape(-1).cpu().numpy()  # (numel,) row-major
    pos = np.flatnonzero(flat)
    gaps = np.diff(np.concatenate([[-1], pos]))  # (nnz,) >= 1
    span = 1 << index_bits
    n_fill = (gaps - 1) // span  # fillers needed before each non-zero
    total = len(pos) + int(n_fill.sum())
    out_gaps = np.full(total, span, dtype=np.int64)
    out_vals = np.zeros(total, dtype=np.int64)
    where = np.cumsum(n_fill + 1) - 1  # position of each real entry
    out_gaps[where] = gaps - n_fill * span
    _, inverse = np.unique(flat[pos], return_inverse=True)
    out_vals[where] = inverse.reshape(-1) + 1
    return {"gaps": out_gaps, "values": out_vals, "fillers": np.asarray(int(n_fill.sum()))}


def model_size(model: nn.Module) -> dict[str, Any]:
    """Per-layer and total storage of ``model`` (see the module docstring).

    Returns
    -------
    dict with ``layers`` (per compressible tensor, :mod:`sparsenet.layers`: ``name``,
    ``kind`` (fc, conv, embedding, attention), ``weights``, ``nonzero``,
    ``density``, ``weight_bits``, ``index_bits`` (0 when dense), ``entries``,
    ``bits`` (P+Q storage), ``entropy_bits`` (bound), ``dense_bits``), and the totals
    ``weights``, ``nonzero``, ``dense_bytes``, ``bytes``, ``entropy_bytes``.
    """
    layers: list[dict[str, Any]] = []
    for t in compressible_tensors(model):
        name, kind = t.name, t.kind
        w = t.value.detach()
        numel = w.numel()
        nnz = int((w != 0).sum())
        bias = t.bias
        bias_bits = 0 if bias is None else 32 * bias.numel()
        shared = _shared_bits(t.module, t.tensor)
        wbits = shared if shared is not None else 32
        codebook = 32 * (1 << shared) if shared is not None else 0
        if nnz < numel:
            ib = index_bits_of(t)
            sym = layer_symbols(w, ib)
            entries = len(sym["gaps"])
            bits = entries * (wbits + ib) + codebook + bias_bits
            value_h = entropy_bits(sym["values"]) if shared is not None else 32.0 * entries
            ent = value_h + entropy_bits(sym["gaps"]) + codebook + bias_bits
        else:
            ib, entries = 0, numel
            bits = numel * wbits + codebook + bias_bits
            flat = w.reshape(-1).cpu().numpy()
            value_h = (
                entropy_bits(np.unique(flat, return_inverse=True)[1].reshape(-1))
                if shared is not None
                else 32.0 * numel
            )
            ent = value_h + codebook + bias_bits
        layers.append(
            {
                "name": name,
                "kind": kind,
                "weights": numel,
                "nonzero": nnz,
                "density": nnz / max(numel, 1),
                "weight_bits": wbits,
                "index_bits": ib,
                "entries": entries,
                "bits": bits,
                "entropy_bits": ent,
                "dense_bits": 32 * numel + bias_bits,
            }
        )
    dense = sum(x["dense_bits"] for x in layers)
    return {
        "layers": layers,
        "weights": sum(x["weights"] for x in layers),
        "nonzero": sum(x["nonzero"] for x in layers),
        "dense_bytes": dense / 8,
        "bytes": sum(x["bits"] for x in layers) / 8,
        "entropy_bytes": sum(x["entropy_bits"] for x in layers) / 8,
    }
