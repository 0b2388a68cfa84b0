"""The report's figures (matplotlib, Agg backend, written as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from ..layers import compressible_tensors  # noqa: E402
from .sizes import index_bits_of, layer_symbols  # noqa: E402

__all__ = ["plot_sharing", "plot_symbols", "plot_sensitivity", "plot_accuracy_size"]

def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {t.name: t.value.detach().reshape(-1).cpu().numpy() for t in compressible_tensors(model)}


def _grid(n: int) -> tuple[Any, Any]:
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def plot_sharing(before: nn.Module, after: nn.Module, path: Path) -> Path:
    """Per layer: histogram of non-zero weights before sharing and after it, centroids marked."""
    wb, wa = _weights(before), _weights(after)
    names = [n for n in wa if n in wb]
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names, strict=False):
        b, a = wb[name][wb[name] != 0], wa[name][wa[name] != 0]
        ax.hist(b, bins=100, color="tab:blue", alpha=0.6, label="before sharing")
        centroids, counts = np.unique(a, return_counts=True)
        ax2 = ax.twinx()
        ax2.vlines(centroids, 0, counts, color="tab:red", linewidth=1.2, label="after (centroids)")
        ax2.set_yticks([])
        ax.set_title(f"{name}: {len(b):,} non-zeros, {len(centroids)} centroids", fontsize=9)
        ax.set_xlabel("weight")
        ax.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="upper right", fontsize=7)
    fig.suptitle("Weight distribution before and after sharing (bars: cluster sizes)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_symbols(model: nn.Module, path: Path) -> Path:
    """Per layer: distribution of sparse-index gaps and of shared-weight indices (log counts)."""
    layers = compressible_tensors(model)
    fig, axes = plt.subplots(len(layers), 2, figsize=(9, 2.4 * len(layers)), squeeze=False)
    for row, t in zip(axes, layers, strict=True):
        name, bits = t.name, index_bits_of(t)
        sym = layer_symbols(t.value, bits)
        gaps, vals = sym["gaps"], sym["values"][sym["values"] > 0]
        row[0].hist(gaps, bins=np.arange(1, (1 << bits) + 2) - 0.5, color="tab:green")
        row[0].set_yscale("log")
        row[0].set_title(f"{name}: sparse-index gaps ({bits}-bit)", fontsize=9)
        row[1].hist(vals, bins=np.arange(1, vals.max(initial=1) + 2) - 0.5, color="tab:purple")
        row[1].set_yscale("log")
        row[1].set_title(f"{name}: weight indices (sorted by value)", fontsize=9)
    fig.suptitle("Biased distributions that entropy coding exploits")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_sensitivity(curves: dict[str, list[tuple[float, float]]], path: Path) -> Path:
    """Accuracy against sparsity, each layer pruned alone without retraining (Han's Figure 6)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        xs, ys = zip(*sorted(pts), strict=True)
        ax.plot(np.asarray(xs) * 100, np.asarray(ys) * 100, marker="o", label=name)
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Per-layer sensitivity to pruning (no retraining)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_accuracy_size(points: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy against model size (KB, log scale), one point per stage."""
    merged: list[dict[str, Any]] = []
    for p in points:  # a stage that changed nothing (a skipped train) shares its point
        if merged and merged[-1]["bytes"] == p["bytes"] and merged[-1]["accuracy"] == p["accuracy"]:
            merged[-1] = {**merged[-1], "label": f"{merged[-1]['label']}, {p['label']}"}
        else:
            merged.append(dict(p))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [p["bytes"] / 1024 for p in merged]
    ys = [p["accuracy"] * 100 for p in merged]
    ax.plot(xs, ys, marker="o", color="tab:blue")
    for i, (p, x, y) in enumerate(zip(merged, xs, ys, strict=True)):
        ax.annotate(f"{p['label']} ({p['compression']:.0f}x)", (x, y), fontsize=8,
                    textcoords="offset points", xytext=(-4, 8 if i % 2 == 0 else -14),
                    ha="right" if i == len(merged) - 1 else "left")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("size (KB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against size across stages")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
