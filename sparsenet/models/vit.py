"""A small Vision Transformer for 28×28 images (Dosovitskiy et al., 2021), pre-LN blocks.

Layout for the defaults, 28×28 input::

    patch_embed  conv 4×4 stride 4 (C→96)       → 49 tokens of width 96
    pos          learned position embedding (nn.Embedding(49, 96)), added
    blocks       3 × [x + MHA(LN(x)),  x + fc2(GELU(fc1(LN(x))))]   4 heads, MLP 96→192→96
    norm         final LayerNorm, mean over tokens
    head         linear 96→classes

Attention is :class:`torch.nn.MultiheadAttention` with ``batch_first=True`` (its packed
``in_proj_weight`` plus the ``out_proj`` Linear), so every weight tensor is one of the
standard layer kinds (Conv2d, Linear, Embedding, MultiheadAttention). Mean pooling instead
of a class token keeps the forward free of batch-size-dependent parameters. 228,384
weights (Conv + Linear + attention in-projection + position embedding) for 28×28 inputs
and 10 classes. The forward has no data-dependent Python control flow, so the model traces
with ``torch.fx.symbolic_trace`` (MultiheadAttention stays a leaf module).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError

__all__ = ["EncoderBlock", "ViT"]


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder block.

    Parameters
    ----------
    dim : token width.
    heads : attention heads (must divide ``dim``).
    hidden : MLP hidden width.

    Shapes: (B, T, dim) → (B, T, dim).
    """

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, hidden), gelu=nn.GELU(), fc2=nn.Linear(hidden, dim))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Patch embedding, learned positions, pre-LN encoder blocks, mean pooling, linear head.

    Parameters
    ----------
    in_channels : image channels C.
    input_size : image side H = W (a multiple of ``patch``).
    num_classes : outputs of ``head``.
    patch : patch side; ``(input_size / patch)²`` tokens.
    dim : token width.
    depth : number of encoder blocks.
    heads : attention heads per block (must divide ``dim``).
    mlp_ratio : MLP hidden width = ``mlp_ratio · dim``.

    Input (B, C, H, W); output (B, num_classes) logits. Children: ``patch_embed``,
    ``pos``, ``blocks`` (``nn.Sequential`` of :class:`EncoderBlock`), ``norm``, ``head``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        input_size: int = 28,
        num_classes: int = 10,
        patch: int = 4,
        dim: int = 96,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: int = 2,
    ) -> None:
        sizes = dict(
            in_channels=in_channels, input_size=input_size, patch=patch, dim=dim, depth=depth,
            heads=heads, mlp_ratio=mlp_ratio,
        )
        if (
            min(sizes.values()) < 1
            or num_classes < 2
            or input_size % patch
            or dim % heads
        ):
            raise SparsenetError(
                f"vit: bad sizes {sizes}, num_classes={num_classes}; expected positive sizes, "
                ">= 2 classes, input_size a multiple of patch and dim a multiple of heads"
            )
        super().__init__()
        self.num_tokens = (input_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Embedding(self.num_tokens, dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.Sequential(
            *[EncoderBlock(dim, heads, mlp_ratio * dim) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.arch: dict[str, Any] = {
            "name": "vit",
            "kwargs": {**sizes, "num_classes": num_classes},
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, T, dim)
        positions = torch.arange(self.num_tokens, device=x.device)  # (T,)
        x = self.blocks(x + self.pos(positions))  # (B, T, dim)
        return self.head(self.norm(x).mean(dim=1))  # (B, classes)
