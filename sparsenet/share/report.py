"""Reports on shared layers: quantisation error, storage bits, codebook histograms (PNG).

Storage follows the review's formula for one layer of n clustered weights of b bits:
n·b bits before, n·log2(k) + k·b after (indices plus codebook). Only non-zero weights
count as n: the positions of pruned zeros cost the same before and after (a sparse
index) and are left to the entropy coder.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io import atomic_write_bytes
from .codebook import SharedWeight, shared_layers

__all__ = [
    "reference_weight",
    "storage_bits",
    "quantization_report",
    "format_report",
    "snapshot_codebooks",
    "plot_histograms",
]


@torch.no_grad()
def reference_weight(module: nn.Module, tensor: str, p: SharedWeight) -> torch.Tensor:
    """The tensor as it was before sharing: ``original`` through the parametrisations before ``p``.

    ``original`` receives no gradient while shared, so this is the clustered weight even
    after centroid fine-tuning (and after a save/load round trip).
    """
    plist: Any = module.parametrizations[tensor]  # type: ignore[index, union-attr]
    x = plist.original
    for q in plist:
        if q is p:
            break
        x = q(x)
    return x.detach()


def storage_bits(n: int, bits: int, float_bits: int = 32) -> dict[str, int | float]:
    """``n·b`` before and ``n·log2(k) + k·b`` after for n weights, k = 2**bits, b = float_bits."""
    before = n * float_bits
    after = n * bits + (2**bits) * float_bits
    return {"before": before, "after": after, "ratio": before / after if after else math.inf}


@torch.no_grad()
def quantization_report(model: nn.Module) -> dict[str, Any]:
    """Per shared layer: bits, clusters, quantisation error and storage bits; and totals.

    Returns
    -------
    dict with ``layers``: list of dicts ``name`` (``"fc1"``, or ``"fc1.bias"`` for a
    tensor other than ``weight``), ``bits``, ``clusters`` (k), ``used`` (non-empty
    clusters), ``weights`` (numel), ``nonzero`` (clustered weights n), ``mse`` (mean
    squared error over the n clustered weights), ``relative_error`` (‖W_q − W‖ / ‖W‖,
    Frobenius), ``storage_bits_before`` (n·b), ``storage_bits_after`` (n·log2 k + k·b),
    ``compression`` (their ratio); and ``total`` with the summed counts and bits.
    """
    layers: list[dict[str, Any]] = []
    for name, tensor, module, p in shared_layers(model):
        ref = reference_weight(module, tensor, p).double()
        q = getattr(module, tensor).detach().double()
        keep = p.keep
        n = int(keep.sum())
        err = (q - ref)[keep]
        fbits = torch.finfo(p.centroids.dtype).bits
        st = storage_bits(n, p.bits, fbits)
        ref_norm = float(ref.norm())
        layers.append(
            {
                "name": name if tensor == "weight" else f"{name}.{tensor}",
                "bits": p.bits,
                "clusters": p.k,
                "used": int((p.cluster_sizes() > 0).sum()),
                "weights": keep.numel(),
                "nonzero": n,
                "mse": float((err**2).mean()) if n else 0.0,
                "relative_error": float(err.norm()) / ref_norm if ref_norm else 0.0,
                "storage_bits_before": st["before"],
                "storage_bits_after": st["after"],
                "compression": st["ratio"],
            }
        )
    before = sum(x["storage_bits_before"] for x in layers)
    after = sum(x["storage_bits_after"] for x in layers)
    total = {
        "nonzero": sum(x["nonzero"] for x in layers),
        "storage_bits_before": before,
        "storage_bits_after": after,
        "compression": before / after if after else math.inf,
    }
    return {"layers": layers, "total": total}


def format_report(report: dict[str, Any]) -> str:
    """A fixed-width table of :func:`quantization_report` output."""
    rows = [
        f"{'layer':<10} {'w.b':>4} {'used/k':>9} {'nonzero':>9} {'mse':>10} {'rel.err':>8} "
        f"{'bits before':>12} {'bits after':>11} {'ratio':>6}"
    ]
    for x in report["layers"]:
        rows.append(
            f"{x['name']:<10} {x['bits']:>4} {str(x['used']) + '/' + str(x['clusters']):>9} "
            f"{x['nonzero']:>9,} {x['mse']:>10.3e} {x['relative_error']:>8.4f} "
            f"{x['storage_bits_before']:>12,} {x['storage_bits_after']:>11,} {x['compression']:>6.2f}"
        )
    t = report["total"]
    rows.append(
        f"{'total':<10} {'':>4} {'':>9} {t['nonzero']:>9,} {'':>10} {'':>8} "
        f"{t['storage_bits_before']:>12,} {t['storage_bits_after']:>11,} {t['compression']:>6.2f}"
    )
    return "\n".join(rows)


def snapshot_codebooks(model: nn.Module) -> dict[str, np.ndarray]:
    """Each shared layer's centroids now, ``{name: (k,) float64}`` (e.g. before fine-tuning)."""
    return {
        (name if tensor == "weight" else f"{name}.{tensor}"): p.centroids.detach()
        .cpu()
        .double()
        .numpy()
        .copy()
        for name, tensor, _m, p in shared_layers(model)
    }


def plot_histograms(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    before: dict[str, np.ndarray] | None = None,
    bins: int = 200,
) -> list[Path]:
    """One PNG per shared layer: histogram of its clustered weights with the centroids marked.

    Blue bars: the pre-sharing non-zero weights. Green crosses: ``before`` centroids (e.g.
    from :func:`snapshot_codebooks` taken before fine-tuning), red dots: the current
    centroids; each marker sits at the histogram height at its value (as in Deep
    Compression's Figure 4). Only non-empty clusters are marked.

    Returns
    -------
    the written paths, ``<out_dir>/hist_<layer>.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, tensor, module, p in shared_layers(model):
        label = name if tensor == "weight" else f"{name}.{tensor}"
        ref = reference_weight(module, tensor, p)[p.keep].cpu().double().numpy()  # (n,)
        used = (p.cluster_sizes() > 0).cpu().numpy()
        now = p.centroids.detach().cpu().double().numpy()[used]
        fig, ax = plt.subplots(figsize=(7, 3.2))
        hist = ax.hist(ref, bins=bins, color="#4a7ebb", alpha=0.8, label="weights")
        counts, edges = np.asarray(hist[0]), np.asarray(hist[1])  # (bins,), (bins + 1,)
        centres = (edges[:-1] + edges[1:]) / 2

        def height(
            c: np.ndarray, counts: np.ndarray = counts, centres: np.ndarray = centres
        ) -> Any:
            return np.interp(c, centres, counts)

        if before is not None and label in before:
            b = np.asarray(before[label])[used]
            ax.plot(b, height(b), "x", color="green", ms=6, label="centroids before fine-tuning")
        ax.plot(now, height(now), "o", color="red", ms=3.5, label="centroids now")
        ax.set_title(
            f"{label}: {len(ref):,} non-zero weights, {p.bits} bits ({int(used.sum())}/{p.k} used)"
        )
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        paths.append(atomic_write_bytes(Path(out_dir) / f"hist_{label}.png", buf.getvalue()))
    return paths
