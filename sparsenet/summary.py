"""Per-tensor facts about a model: parameters, non-zeros, dense bytes, transforms applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from .checkpoint import describe_transforms
from .layers import compressible_tensors

__all__ = ["model_summary", "format_summary"]


def model_summary(model: nn.Module, nonzero: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Compressible tensors (:mod:`sparsenet.layers`), their effective (post-parametrisation)
    sizes and transforms.

    Parameters
    ----------
    model : nn.Module
    nonzero : mapping, optional
        Non-zero count of every compressible tensor by state-dict key (``"fc1.weight"``),
        used instead of counting its values: then only shapes are read, so ``model`` may
        live on the ``meta`` device (``sparsenet info`` of a ``.snn`` file, which takes
        the counts from the file's header).

    Returns
    -------
    dict with ``layers`` (one per compressible tensor: ``name``, ``kind``, ``type``,
    ``shape``, ``weights``, ``nonzero``, ``density``, ``bias``, ``parametrized``,
    ``transforms``), ``total_params`` (stored parameter and buffer entries), ``weights``,
    ``nonzero``, ``density`` and ``dense_bytes`` (float32 size of all effective weights and
    their biases).
    """
    entries = describe_transforms(model)
    tensors = compressible_tensors(model)
    has_row = {(t.module_path, t.tensor) for t in tensors}
    first_row: dict[str, str] = {}
    for t in tensors:
        first_row.setdefault(t.module_path, t.tensor)
    layers = []
    tot_w = tot_nz = dense_bytes = 0
    for t in tensors:
        w = t.value.detach()  # effective weight, through any parametrisation
        nz = int(nonzero[t.key]) if nonzero is not None else int((w != 0).sum())
        bias = t.bias
        nb = 0 if bias is None else bias.numel()
        related = [
            {
                "kind": e["kind"],
                **({"tensor": e["tensor"]} if "tensor" in e else {}),
                **_brief(e["args"]),
            }
            for e in entries
            if _applies(e, t.module_path, t.tensor, has_row, first_row)
        ]
        layers.append(
            {
                "name": t.name,
                "kind": t.kind,
                "type": _layer_type(t.module),
                "shape": list(w.shape),
                "weights": w.numel(),
                "nonzero": nz,
                "density": nz / max(w.numel(), 1),
                "bias": nb,
                "parametrized": t.parametrized,
                "transforms": related,
            }
        )
        tot_w += w.numel()
        tot_nz += nz
        dense_bytes += 4 * (w.numel() + nb)
    stored = sum(t.numel() for t in model.state_dict().values())
    return {
        "layers": layers,
        "total_params": stored,
        "weights": tot_w,
        "nonzero": tot_nz,
        "density": tot_nz / max(tot_w, 1),
        "dense_bytes": dense_bytes,
    }


def _applies(
    entry: dict[str, Any],
    path: str,
    tensor: str,
    has_row: set[tuple[str, str]],
    first_row: dict[str, str],
) -> bool:
    """Whether a transform entry shows in the row of ``path.tensor``.

    A parametrisation shows in its tensor's row, or in its module's first row when that
    tensor has none (a mask on a bias). A module swap shows in its own rows, its
    ancestors' (low-rank "fc1" over "fc1.0") and its descendants'.
    """
    mod = entry["module"]
    if "tensor" in entry:
        if mod != path:
            return False
        return bool(entry["tensor"] == tensor or (
            (mod, entry["tensor"]) not in has_row and first_row.get(mod) == tensor
        ))
    return mod == path or mod.startswith(path + ".") or path.startswith(mod + ".")


def _layer_type(m: nn.Module) -> str:
    """``Linear`` for a parametrised Linear too (torch subclasses it as ``ParametrizedLinear``)."""
    cls = type(m)
    if parametrize.is_parametrized(m) and cls.__name__.startswith("Parametrized"):
        cls = cls.__bases__[0]
    return cls.__name__


def _brief(args: dict[str, Any]) -> dict[str, Any]:
    """Scalar spec arguments only (ranks, bits, clusters), for display."""
    return {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))}


def format_summary(summary: dict[str, Any]) -> str:
    """A fixed-width table of :func:`model_summary` output."""
    rows = [
        f"{'layer':<12} {'type':<8} {'shape':<18} {'weights':>9} {'nonzero':>9} {'density':>8}  transforms"
    ]
    for layer in summary["layers"]:
        tr = "; ".join(
            t["kind"] + "(" + ", ".join(f"{k}={v}" for k, v in t.items() if k != "kind") + ")"
            for t in layer["transforms"]
        )
        rows.append(
            f"{layer['name']:<12} {layer['type']:<8} {'x'.join(map(str, layer['shape'])):<18} "
            f"{layer['weights']:>9,} {layer['nonzero']:>9,} {layer['density']:>8.2%}  {tr or '-'}"
        )
    rows.append(
        f"{'total':<12} {'':<8} {'':<18} {summary['weights']:>9,} {summary['nonzero']:>9,} "
        f"{summary['density']:>8.2%}"
    )
    rows.append(
        f"stored tensors: {summary['total_params']:,} entries; dense float32: {summary['dense_bytes']:,} bytes"
    )
    return "\n".join(rows)
