"""Helpers: pruned + shared models made by hand (sparsenet.prune/share are other branches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsenet.models import build_model


def prune_and_share(
    model: nn.Module, density: float = 0.1, k: int = 16, seed: int = 0
) -> nn.Module:
    """Zero all but the largest ``density`` of each Linear/Conv weight, round the rest to k values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight
                w.add_(1e-3 * torch.randn(w.shape, generator=g))
                keep = max(1, int(density * w.numel()))
                thr = w.abs().flatten().kthvalue(w.numel() - keep + 1).values
                nz = w.abs() >= thr
                cb = torch.linspace(float(w.min()), float(w.max()), k)
                cb = cb[cb != 0]
                q = cb[(w[..., None] - cb).abs().argmin(-1)]
                w.copy_(torch.where(nz, q, torch.zeros(())))
    return model


@pytest.fixture()
def lenet300_digits() -> nn.Module:
    return prune_and_share(build_model("lenet300", seed=0, in_features=64), density=0.08, k=32)


@pytest.fixture()
def lenet5_digits() -> nn.Module:
    m = build_model("lenet5", seed=0, in_channels=1, input_size=8, num_classes=10, padding=2)
    return prune_and_share(m, density=0.2, k=64)


@pytest.fixture()
def tiny_model() -> nn.Module:
    m = build_model("lenet300", seed=0, in_features=12, hidden=[6], num_classes=3)
    return prune_and_share(m, density=0.3, k=4)
