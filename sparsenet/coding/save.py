"""Model -> ``.snn``: gather each tensor's effective value, encode weights, write the file."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import describe_arch, describe_transforms
from ..errors import SparsenetError, SpecError
from .codec import CODERS, LayerCode, encode_layer
from .container import write_snn

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_INDEX_BITS",
    "AUTO_INDEX_BITS",
    "parse_bits",
    "layer_kind",
    "effective_tensors",
    "codebook_of",
    "encode_model",
    "save_snn",
]

DEFAULT_BITS = {"conv": 8, "fc": 5}
DEFAULT_INDEX_BITS = {"conv": 8, "fc": 5}
# index_bits="auto" tries every gap width here per pruned layer and keeps the smallest file:
# narrow gaps need filler entries on long runs of zeros, wide ones a larger alphabet.
AUTO_INDEX_BITS = range(2, 13)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def parse_bits(spec: str | dict[str, int] | None, default: dict[str, int]) -> dict[str, int]:
    """``"conv=8,fc=5"`` (or a dict; keys ``conv``, ``fc`` or layer names) merged over ``default``."""
    out = dict(default)
    if spec is None:
        return out
    if isinstance(spec, str):
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, val = part.partition("=")
            if not sep or not val.strip().isdigit():
                raise SpecError(
                    f"bad bits spec {spec!r}: {part!r} is not NAME=BITS (e.g. conv=8,fc=5)"
                )
            out[key.strip()] = int(val)
    else:
        out.update({str(k): int(v) for k, v in spec.items()})
    for key, v in out.items():
        if not 1 <= v <= 16:
            raise SpecError(f"bad bits spec {spec!r}: {key}={v}, expected 1..16 bits")
    return out


def layer_kind(module: nn.Module) -> str | None:
    """``"conv"`` for convolutions, ``"fc"`` for Linear, None for anything else."""
    if isinstance(module, _CONV):
        return "conv"
    if isinstance(module, nn.Linear):
        return "fc"
    return None


def _inside_parametrization(name: str) -> bool:
    return name.startswith("parametrizations.") or ".parametrizations." in name


def effective_tensors(model: nn.Module) -> dict[str, tuple[nn.Module, str, str, torch.Tensor]]:
    """Every persistent parameter and buffer as seen through parametrisations.

    Returns ``{"fc1.weight": (module, "fc1", "weight", tensor), ...}`` in module order; the
    keys are the state-dict keys of the same model without parametrisations.
    """
    out: dict[str, tuple[nn.Module, str, str, torch.Tensor]] = {}
    for mname, m in model.named_modules():
        if _inside_parametrization(mname):
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
    bits: str | dict[str, int] | None = None,
    index_bits: str | dict[str, int] | None = None,
    layout: str = "auto",
) -> tuple[list[LayerCode], dict[str, torch.Tensor]]:
    """Encode the weights of every Linear/Conv layer; other tensors are kept raw.

    The codebook of a layer is its weight-sharing parametrisation's centroids when one is
    present, else the sorted unique non-zero weights when there are at most ``2**bits``;
    otherwise the layer is stored raw (float32 at its non-zeros, or fully dense).
    """
    if coder not in CODERS:
        raise SparsenetError(f"unknown coder {coder!r}; expected one of {sorted(CODERS)}")
    wbits = parse_bits(bits, DEFAULT_BITS)
    auto = index_bits == "auto"
    ibits = parse_bits(None if auto else index_bits, DEFAULT_INDEX_BITS)
    layers: list[LayerCode] = []
    raw: dict[str, torch.Tensor] = {}
    for key, (module, mname, tname, t) in effective_tensors(model).items():
        kind = layer_kind(module)
        if kind is None or tname != "weight" or t.dtype != torch.float32:
            raw[key] = t.clone()
            continue
        cb = codebook_of(module, tname)
        b = cb[1] if cb is not None else wbits.get(mname, wbits.get(kind, DEFAULT_BITS[kind]))
        ib = ibits.get(mname, ibits.get(kind, DEFAULT_INDEX_BITS[kind]))
        lc = encode_layer(
            key, kind, t.cpu().numpy(), bits=b, index_bits=AUTO_INDEX_BITS if auto else ib,
            coder=coder, centroids=None if cb is None else cb[0].cpu().numpy(), layout=layout,
        )
        layers.append(lc)
    return layers, raw


def save_snn(
    model: nn.Module,
    path: str | os.PathLike[str],
    coder: str = "huffman",
    bits: str | dict[str, int] | None = None,
    index_bits: str | dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    layout: str = "auto",
    record_arch: bool = True,
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
    bits : "conv=8,fc=5" or dict
        Shared-weight index bits per kind or layer name (a parametrisation's own ``bits``
        wins).
    index_bits : "conv=8,fc=5", dict or "auto"
        Gap bits of the sparse index (Deep Compression: 8 for conv, 5 for fc); ``"auto"``
        picks, per pruned layer, the width in :data:`AUTO_INDEX_BITS` giving the fewest bytes.
    metadata : dict, optional
        JSON-able; stored in the header (e.g. ``{"dataset": "fashion-mnist"}``).
    layout : "auto" or "sparse"
        ``"auto"``: per layer, the smallest of the applicable storage modes;
        ``"sparse"``: Deep Compression's gap + index layout for every pruned layer.
    record_arch : bool
        A custom model that cannot be recorded raises
        :class:`~sparsenet.graph.RecordError` (before any encoding); ``False`` writes it
        without an architecture instead (it then loads only with ``model=``).
    """
    from .accounting import size_report
    from .container import SnnFile

    arch = describe_arch(model, required=record_arch)
    swaps = [e for e in describe_transforms(model) if "tensor" not in e]
    layers, raw = encode_model(model, coder, bits, index_bits, layout)
    info = {"arch": arch, "transforms": swaps, "coder": coder, "metadata": dict(metadata or {})}
    size = write_snn(path, layers, raw, info)
    return size_report(SnnFile(info, layers, raw, size))
