"""Sparse Linear and Conv2d modules over the compact weight form of :mod:`.compact`.

Every array is a registered buffer (``seg_ptr``, ``entries``, ``codebook``, ``values``,
``bias``), so ``.to()``, ``.double()``, ``state_dict()`` and
``load_state_dict()`` behave as for any module: ``.double()`` turns the codebook, values
and bias into float64 and the kernels then run in float64.

``forward`` on its own (per-module execution) calls the numba kernel of the layer for CPU
float32/float64 inputs that need no gradient, and otherwise decodes the dense weight with
torch ops (any device, autograd to the input) and calls ``F.linear``/``F.conv2d``. A whole
model is normally run by a plan (:mod:`.plan`), which calls the same kernels without going
through these modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import sparse_kernels as kernels
from .compact import CompactWeight, compact_from_coo, compact_from_dense, decode_dense, segments

__all__ = ["SparseLinear", "SparseConv2d", "SPARSE_LAYERS"]

_NONE_F = np.zeros(0, dtype=np.float32)


class _CompactLayer(nn.Module):
    seg_ptr: torch.Tensor
    entries: torch.Tensor
    codebook: torch.Tensor
    values: torch.Tensor
    bias: torch.Tensor | None
    rows: int
    cols: int
    colbits: int

    def _set_weight(self, cw: CompactWeight, bias: torch.Tensor | None) -> None:
        self.rows, self.cols, self.colbits = cw.rows, cw.cols, cw.colbits
        for name in ("seg_ptr", "entries", "codebook", "values"):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(getattr(cw, name))))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def mode(self) -> int:
        """Kernel weight mode: 0 codebook, 1 a value per entry."""
        return 1 if self.values.numel() else 0

    @property
    def nseg(self) -> int:
        """Column segments per row (see :mod:`.compact`)."""
        return segments(self.cols, self.colbits)

    @property
    def nnz(self) -> int:
        return int(self.entries.numel())

    @property
    def weight_bytes(self) -> int:
        """Bytes of every buffer this layer holds (weights, indices, codebook, bias)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def dense_weight(self) -> torch.Tensor:
        """The decoded ``(rows, cols)`` weight (torch ops, on the buffers' device)."""
        return decode_dense(self.seg_ptr, self.entries, self.codebook, self.values, self.cols,
                            self.colbits)

    def _kernel_ok(self, x: torch.Tensor) -> bool:
        fbuf = self.codebook if self.mode == 0 else self.values
        return (
            x.device.type == "cpu"
            and self.seg_ptr.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.dtype == fbuf.dtype
            and (self.bias is None or self.bias.dtype == x.dtype)
            and not (torch.is_grad_enabled() and x.requires_grad)
        )

    def _kernel_args(self, dtype: torch.dtype) -> tuple[Any, ...]:
        f = _NONE_F if dtype == torch.float32 else _NONE_F.astype(np.float64)
        cb = self.codebook.numpy() if self.codebook.numel() else f
        vals = self.values.numpy() if self.values.numel() else f
        shift = self.bias.numpy() if self.bias is not None else f
        return (self.seg_ptr.numpy(), self.entries.numpy(), cb, vals, self.mode, self.colbits,
                self.nseg, f, shift)


class SparseLinear(_CompactLayer):
    """``y = x Wᵀ + b`` with ``W`` ``(out_features, in_features)`` in compact form.

    Build with :meth:`from_dense`, :meth:`from_csr` or :meth:`from_compact`.
    """

    def __init__(self, in_features: int, out_features: int, weight: CompactWeight,
                 bias: torch.Tensor | None = None):
        super().__init__()
        if (weight.rows, weight.cols) != (out_features, in_features):
            raise ValueError(f"weight is {weight.rows}x{weight.cols}, expected {out_features}x{in_features}")
        self.in_features, self.out_features = in_features, out_features
        self._set_weight(weight, bias)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> SparseLinear:
        return cls(weight.shape[1], weight.shape[0], compact_from_dense(weight), bias)

    @classmethod
    def from_csr(cls, in_features: int, out_features: int, crow: Any, col: Any, values: Any,
                 bias: torch.Tensor | None = None) -> SparseLinear:
        crow, col, values = (np.asarray(torch.as_tensor(a).cpu()) for a in (crow, col, values))
        r = np.repeat(np.arange(out_features), np.diff(crow))
        cw = compact_from_coo(out_features, in_features, r, col, values)
        return cls(in_features, out_features, cw, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if x.shape[-1] != self.in_features:  # as F.linear would; the kernel must never see it
            raise RuntimeError(f"SparseLinear: input has {x.shape[-1]} features, expected {self.in_features}")
        if self._kernel_ok(x):
            x2 = x.reshape(-1, self.in_features)  # (B, in)
            b = x2.shape[0]
            xt = np.ascontiguousarray(x2.detach().numpy().T)  # (in, B)
            y = np.empty((self.out_features, b), dtype=xt.dtype)
            sp, ent, cb, vals, mode, colbits, nseg, scale, shift = self._kernel_args(x.dtype)
            kernels.linear(sp, ent, cb, vals, mode, colbits, nseg, xt.reshape(-1), y.reshape(-1),
                           self.out_features, self.in_features, b, scale, shift, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(y.T)).reshape(*lead, self.out_features)
        return F.linear(x, self.dense_weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}"


class SparseConv2d(_CompactLayer):
    """2-D convolution (groups 1, zero padding) with a compact ``(out, in·kh·kw)`` weight."""

    def __init__(self, conv: nn.Conv2d, weight: CompactWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size: tuple[int, int] = tuple(conv.kernel_size)  # type: ignore[assignment]
        self.stride: tuple[int, int] = tuple(conv.stride)  # type: ignore[assignment]
        self.padding: tuple[int, int] = tuple(conv.padding)  # type: ignore[assignment]
        self.dilation: tuple[int, int] = tuple(conv.dilation)  # type: ignore[assignment]
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        if (weight.rows, weight.cols) != (self.out_channels, k):
            raise ValueError(f"weight is {weight.rows}x{weight.cols}, expected {self.out_channels}x{k}")
        self._set_weight(weight, bias)

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple)
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> SparseConv2d:
        """The compact copy of an ordinary ``nn.Conv2d`` (weight zeros dropped)."""
        b = None if conv.bias is None else conv.bias.detach()
        return cls(conv, compact_from_dense(conv.weight.detach()), b)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:  # the kernel must never see it
            raise RuntimeError(f"SparseConv2d: input of shape {tuple(x.shape)}, expected "
                               f"(B, {self.in_channels}, H, W)")
        oh, ow = self.out_size(x.shape[-2], x.shape[-1])
        if oh < 1 or ow < 1:
            raise RuntimeError(f"SparseConv2d: input {tuple(x.shape[-2:])} is smaller than the kernel")
        if x.dim() == 4 and self._kernel_ok(x):
            b, c, h, w = x.shape
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
            oh, ow = self.out_size(h, w)
            xt = np.ascontiguousarray(x.detach().numpy().transpose(1, 2, 3, 0))  # (C, H, W, B)
            if ph or pw:
                xp = np.zeros((c, h + 2 * ph, w + 2 * pw, b), dtype=xt.dtype)
                xp[:, ph:ph + h, pw:pw + w] = xt
                xt = xp
            y = np.empty((self.out_channels, oh, ow, b), dtype=xt.dtype)
            sp, ent, cb, vals, mode, colbits, nseg, scale, shift = self._kernel_args(x.dtype)
            kernels.conv2d(sp, ent, cb, vals, mode, colbits, nseg, xt.reshape(-1), y.reshape(-1),
                           self.out_channels, c, xt.shape[1], xt.shape[2], oh, ow, kh, kw, sh, sw,
                           dh, dw, b, scale, shift, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(y.transpose(3, 0, 1, 2)))
        weight = self.dense_weight().to(x.dtype).reshape(
            self.out_channels, self.in_channels, *self.kernel_size
        )
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, nnz={self.nnz}"
        )


SPARSE_LAYERS = (SparseLinear, SparseConv2d)
