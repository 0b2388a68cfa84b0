"""Custom models defined only here: the subprocess tests load their files without this module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Depthwise conv + BN + ReLU with a residual add: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.bn(self.dw(x)))


class TinyViT(nn.Module):
    """conv stem -> residual block -> pool -> tokens + cls token -> MHA -> LayerNorm -> head.

    Input (B, 1, 8, 8) (sklearn digits), output (B, classes).
    """

    def __init__(self, classes: int = 10, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, dim, 3, padding=1)
        self.block = Block(dim)
        self.pool = nn.MaxPool2d(2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block(self.stem(x)))  # (B, D, 4, 4)
        t = x.flatten(2).transpose(1, 2)  # (B, 16, D)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], dim=1)  # (B, 17, D)
        a, _ = self.attn(t, t, t, need_weights=False)
        t = self.norm(a + t)
        feats = torch.cat([t[:, 0], t[:, 1:].mean(1)], dim=-1)  # (B, 2D)
        return self.head(self.drop(feats))


class MLP(nn.Module):
    """flatten -> fc1 -> ReLU -> fc2 (a plain custom model, for the CLI sources)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def make_mlp() -> nn.Module:
    """A factory for ``--model graph_models:make_mlp``."""
    torch.manual_seed(0)
    return MLP()


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))
