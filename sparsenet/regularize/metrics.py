"""Measured sparsity: of weights (exact zeros, |w| < ε), of activations over a data set, Hoyer's.

Hoyer's measure of a vector x with n entries (Hoyer, 2004) is

    H(x) = (√n − ‖x‖₁/‖x‖₂) / (√n − 1)  ∈ [0, 1],

1 for a single non-zero entry and 0 when all magnitudes are equal. It is scale-invariant
and, unlike counting zeros, sees weights that are small without being zero. By convention
here H = 1 for an all-zero vector and for n = 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .sites import activation_sites, weight_layers

__all__ = ["hoyer", "weight_sparsity", "activation_sparsity", "format_activation_sparsity"]


def hoyer(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Hoyer's sparsity of ``x`` flattened (``dim=None``, a 0-d tensor) or along ``dim``.

    Parameters
    ----------
    x : any shape; ``dim`` picks the axis whose vectors are measured, e.g. ``dim=1`` on
        activations of shape (B, units) gives one value per sample, shape (B,).
    """
    x = x.detach().double()
    if dim is None:
        x, dim = x.reshape(-1), 0
    n = x.shape[dim]
    if n <= 1:
        return torch.ones(x.sum(dim).shape, dtype=torch.float64)
    l1 = x.abs().sum(dim)
    l2 = torch.linalg.vector_norm(x, dim=dim)
    root = math.sqrt(n)
    h = (root - l1 / l2.clamp_min(torch.finfo(torch.float64).tiny)) / (root - 1)
    return torch.where(l2 == 0, torch.ones_like(h), h).clamp(0.0, 1.0)


@torch.no_grad()
def weight_sparsity(
    model: nn.Module, eps: float = 0.0, layers: Iterable[str] | None = None
) -> dict[str, Any]:
    """Zeros among the effective weights (not biases) of each Linear/Conv layer.

    Returns
    -------
    dict with ``eps``, ``layers`` (name → ``weights``, ``zeros``, ``sparsity`` (exact
    zeros / weights), ``small`` (|w| < eps, which includes the zeros when eps > 0),
    ``sparsity_eps``, ``hoyer``) and the same totals under ``total``.
    """
    out: dict[str, Any] = {"eps": eps, "layers": {}}
    tot_n = tot_zero = tot_small = 0
    for name, m in weight_layers(model, layers).items():
        w = cast(torch.Tensor, m.weight).detach()
        n, zeros = w.numel(), int((w == 0).sum())
        small = int((w.abs() < eps).sum()) if eps > 0 else zeros
        out["layers"][name] = {
            "weights": n,
            "zeros": zeros,
            "sparsity": zeros / max(n, 1),
            "small": small,
            "sparsity_eps": small / max(n, 1),
            "hoyer": float(hoyer(w)),
        }
        tot_n, tot_zero, tot_small = tot_n + n, tot_zero + zeros, tot_small + small
    out["total"] = {
        "weights": tot_n,
        "zeros": tot_zero,
        "sparsity": tot_zero / max(tot_n, 1),
        "small": tot_small,
        "sparsity_eps": tot_small / max(tot_n, 1),
    }
    return out


@dataclass
class _SiteStats:
    """Running counts of one activation site over the batches seen."""

    zeros: int = 0
    entries: int = 0
    hoyer_sum: float = 0.0
    alive: torch.Tensor | None = None  # (units,) bool: non-zero on some sample

    def add(self, z: torch.Tensor) -> None:
        """Count a batch ``z`` of shape (B, units)."""
        self.zeros += int((z == 0).sum())
        self.entries += z.numel()
        self.hoyer_sum += float(hoyer(z, dim=1).sum())
        alive = (z != 0).any(0)
        self.alive = alive if self.alive is None else (self.alive | alive)


@torch.no_grad()
def activation_sparsity(
    model: nn.Module,
    x: torch.Tensor,
    layers: Iterable[str] | None = None,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Fraction of exactly-zero activations per layer over the samples ``x`` (N, ...).

    Sites are chosen as in :func:`sparsenet.regularize.sites.activation_sites` (default:
    every activation module, keyed by the layer before it). The model runs in eval mode.

    Returns
    -------
    dict with ``samples`` and ``layers`` (name → ``site`` (module measured), ``units`` per
    sample, ``sparsity`` (zeros / (N·units)), ``dead`` (units zero on every sample),
    ``hoyer`` (mean over samples of Hoyer's measure of the sample's activation vector)),
    and ``total`` (zeros over all measured entries).
    """
    sites = activation_sites(model, layers)
    stats = {k: _SiteStats() for k in sites}
    handles = []
    for key, (_site, module) in sites.items():

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor, s: _SiteStats = stats[key]) -> None:
            s.add(out.detach().reshape(out.shape[0], -1))  # (B, units)

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n = len(x)
    result: dict[str, Any] = {"samples": n, "layers": {}}
    zeros = entries = 0
    for key, (site, _m) in sites.items():
        s = stats[key]
        result["layers"][key] = {
            "site": site,
            "units": s.entries // max(n, 1),
            "sparsity": s.zeros / max(s.entries, 1),
            "dead": int((~s.alive).sum()) if s.alive is not None else 0,
            "hoyer": s.hoyer_sum / max(n, 1),
        }
        zeros, entries = zeros + s.zeros, entries + s.entries
    result["total"] = {"sparsity": zeros / max(entries, 1)}
    return result


def format_activation_sparsity(report: dict[str, Any]) -> str:
    """A fixed-width table of :func:`activation_sparsity` output."""
    rows = [
        f"activation sparsity over {report['samples']:,} samples",
        f"{'layer':<12} {'site':<12} {'units':>7} {'zeros':>8} {'dead':>6} {'hoyer':>6}",
    ]
    for name, r in report["layers"].items():
        rows.append(
            f"{name:<12} {r['site']:<12} {r['units']:>7,} {r['sparsity']:>8.2%} "
            f"{r['dead']:>6,} {r['hoyer']:>6.3f}"
        )
    rows.append(f"{'total':<12} {'':<12} {'':>7} {report['total']['sparsity']:>8.2%}")
    return "\n".join(rows)
