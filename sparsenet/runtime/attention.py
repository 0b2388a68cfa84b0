"""``nn.MultiheadAttention`` whose projections stay in the sparse runtime's compact form.

:class:`SparseMultiheadAttention` replaces an ``nn.MultiheadAttention`` (a registered module
swap of the sparse runtime): its packed ``(3E, E)`` input projection and ``(E, E)`` output
projection are :class:`~.layers.SparseLinear` layers, so resident memory stays near the file
size (2 bytes a weight; the dense module keeps 4); the attention itself
(scaled dot products, softmax) runs in torch. Outputs equal the dense module's within float
rounding, for self- and cross-attention, ``batch_first`` either way, ``attn_mask`` and
``key_padding_mask``, and ``need_weights`` (head-averaged or not).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SparseLinear

__all__ = ["SparseMultiheadAttention"]


class SparseMultiheadAttention(nn.Module):
    """Eval-mode multi-head attention over compact in/out projections.

    Parameters
    ----------
    mha : nn.MultiheadAttention
        The module it replaces (sizes and flags; its weights are not read). Only
        :meth:`supports` modules are accepted.
    in_proj : SparseLinear
        ``(3E, E)``: the query, key and value projections stacked, with ``in_proj_bias``.
    out_proj : SparseLinear
        ``(E, E)`` with ``out_proj.bias``.
    """

    def __init__(self, mha: nn.MultiheadAttention, in_proj: SparseLinear, out_proj: SparseLinear):
        super().__init__()
        if not self.supports(mha):
            raise ValueError("SparseMultiheadAttention needs kdim = vdim = embed_dim, no bias_k/bias_v, "
                             "no add_zero_attn")
        e = mha.embed_dim
        if (in_proj.out_features, in_proj.in_features) != (3 * e, e) or (
                out_proj.out_features, out_proj.in_features) != (e, e):
            raise ValueError(f"projections {in_proj.out_features}x{in_proj.in_features} and "
                             f"{out_proj.out_features}x{out_proj.in_features}; expected {3 * e}x{e} and {e}x{e}")
        self.embed_dim, self.num_heads, self.batch_first = e, mha.num_heads, mha.batch_first
        self.head_dim = e // mha.num_heads
        self.in_proj, self.out_proj = in_proj, out_proj

    @staticmethod
    def supports(mha: nn.Module) -> bool:
        """Plain ``nn.MultiheadAttention`` with one embedding size and no extra key/value rows."""
        return (type(mha) is nn.MultiheadAttention and mha._qkv_same_embed_dim
                and mha.bias_k is None and not mha.add_zero_attn)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As ``nn.MultiheadAttention.forward`` in eval mode: ``(output, weights or None)``."""
        batched = query.dim() == 3
        self_attention = query is key and key is value
        if not batched:  # (T, E): one sequence
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if not self.batch_first or not batched:  # (T, B, E) -> (B, T, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        e = self.embed_dim
        if self_attention:
            q, k, v = self.in_proj(query).split(e, dim=-1)  # each (B, T, E)
        else:  # cross-attention: each input through the whole (3E, E) projection, one third
            # kept (3x the projection work of self-attention; kept simple, not measured as a cost)
            q = self.in_proj(query)[..., :e]
            k = self.in_proj(key)[..., e:2 * e]
            v = self.in_proj(value)[..., 2 * e:]
        b, tq, tk = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (t.reshape(b, -1, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        mask = self._mask(attn_mask, key_padding_mask, is_causal, b, tq, tk, q.dtype)
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).reshape(b, tq, e))  # (B, Tq, E)
        if not self.batch_first or not batched:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if weights is not None and not batched:
            weights = weights.squeeze(0)
        return out, weights

    def _mask(self, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
              is_causal: bool, b: int, tq: int, tk: int, dtype: torch.dtype) -> Any:
        """One additive float mask ``(B, H, Tq, Tk)`` (or broadcastable), or None."""
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(tq, tk, dtype=torch.bool).triu(1)
        mask = None
        for m, shape in ((attn_mask, None), (key_padding_mask, (b, 1, 1, tk))):
            if m is None:
                continue
            f = torch.zeros(m.shape, dtype=dtype).masked_fill(m, float("-inf")) if m.dtype == torch.bool \
                else m.to(dtype)
            if shape is not None:
                f = f.reshape(shape)
            elif f.dim() == 3:  # (B·H, Tq, Tk)
                f = f.reshape(b, self.num_heads, tq, tk)
            mask = f if mask is None else mask + f
        return mask

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
