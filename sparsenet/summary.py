"""Per-layer facts about a model: parameters, non-zeros, dense bytes, transforms applied."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from .checkpoint import describe_transforms

__all__ = ["model_summary", "format_summary"]

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Layers with weights, their effective (post-parametrisation) sizes and transforms.

    Returns
    -------
    dict with ``layers`` (list of per-layer dicts: ``name``, ``type``, ``shape``,
    ``weights``, ``nonzero``, ``density``, ``bias``, ``transforms``), ``total_params``
    (stored parameter and buffer entries), ``weights``, ``nonzero``, ``density`` and
    ``dense_bytes`` (float32 size of all effective weights and biases).
    """
    transforms: dict[str, list[dict[str, Any]]] = {}
    for entry in describe_transforms(model):
        transforms.setdefault(entry["module"], []).append(entry)
    layers = []
    tot_w = tot_nz = dense_bytes = 0
    for name, m in model.named_modules():
        if ".parametrizations." in name or name.startswith("parametrizations."):
            continue
        if not isinstance(m, _LAYER_TYPES):
            continue
        w = m.weight.detach()  # effective weight, through any parametrisation
        nz = int((w != 0).sum())
        bias = getattr(m, "bias", None)
        nb = 0 if bias is None else bias.numel()
        related = [
            {
                "kind": t["kind"],
                **({"tensor": t["tensor"]} if "tensor" in t else {}),
                **_brief(t["args"]),
            }
            for key, ts in transforms.items()
            # A module swap on an ancestor (low-rank "fc1" over "fc1.0") applies here too.
            if key == name or key.startswith(name + ".") or name.startswith(key + ".")
            for t in ts
        ]
        layers.append(
            {
                "name": name,
                "type": type(m).__name__,
                "shape": list(w.shape),
                "weights": w.numel(),
                "nonzero": nz,
                "density": nz / max(w.numel(), 1),
                "bias": nb,
                "parametrized": parametrize.is_parametrized(m),
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
