"""Small models holding every layer type of :mod:`sparsenet.layers`, for tests."""

from __future__ import annotations

import torch
from torch import nn


class Zoo(nn.Module):
    """One of each: Embedding, Conv1d, depthwise Conv2d, ConvTranspose2d (groups 2), MHA with
    a packed in_proj_weight, MHA with separate q/k/v (kdim/vdim), a nested block list, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(8, 2, kdim=4, vdim=6, batch_first=True)
        self.blocks = nn.ModuleList(
            [nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2), "fc": nn.Linear(8, 8)}) for _ in range(2)]
        )
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)


class AttnNet(nn.Module):
    """tokens (B, L) → Embedding → depthwise Conv1d → MHA (self- or cross-attention with
    separate q/k/v projections) → mean over L → Linear: a runnable model of the new kinds."""

    def __init__(self, separate: bool = False, vocab: int = 16, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.dw = nn.Conv1d(dim, dim, 3, padding=1, groups=dim)  # depthwise
        self.kv = nn.Linear(dim, 6) if separate else None
        kdim = 6 if separate else None
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True, kdim=kdim, vdim=kdim)
        self.head = nn.Linear(dim, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens)  # (B, L, D)
        x = self.dw(x.transpose(1, 2)).transpose(1, 2)  # (B, L, D)
        kv = x if self.kv is None else self.kv(x)  # (B, L, D or 6)
        y, _ = self.attn(x, kv, kv, need_weights=False)  # (B, L, D)
        return self.head(y.mean(1))  # (B, 4)


def tokens(n: int = 12, length: int = 5, vocab: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=g)
