"""Singular-value spectrum plots, one PNG per layer."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes
from .ranks import LayerPlan

__all__ = ["plot_spectrum", "plot_spectra"]


def plot_spectrum(plan: LayerPlan) -> bytes:
    """PNG bytes: σ_i (log scale) and cumulative energy Σ_{j≤i} σ_j² / Σ σ², chosen rank marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sv = np.asarray(plan.singular_values, dtype=np.float64)
    idx = np.arange(1, len(sv) + 1)
    s2 = sv**2
    cum = np.cumsum(s2) / s2.sum() if s2.sum() > 0 else np.ones_like(s2)
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
    ax.semilogy(idx, np.maximum(sv, 1e-12), color="tab:blue", lw=1.5, label="σ_i")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value σ_i", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(idx, cum, color="tab:orange", lw=1.2, label="energy kept")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("cumulative energy Σσ²", color="tab:orange")
    title = f"{plan.name} ({plan.shape[0]}×{plan.shape[1]})"
    if plan.rank is not None:
        ax.axvline(plan.rank, color="k", ls="--", lw=1)
        title += f": rank {plan.rank}, rel. err {plan.rel_error:.3f}, {plan.params_before / plan.params_after:.1f}× fewer"
    else:
        title += ": kept dense"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_spectra(
    plans: list[LayerPlan], out_dir: str | os.PathLike[str], prefix: str = ""
) -> list[Path]:
    """Write ``<out_dir>/<prefix>spectrum_<layer>.png`` for each layer; returns the paths."""
    out = Path(out_dir)
    paths = []
    for p in plans:
        path = out / f"{prefix}spectrum_{p.name.replace('.', '_')}.png"
        atomic_write_bytes(path, plot_spectrum(p))
        paths.append(path)
    return paths
