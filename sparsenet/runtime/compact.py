"""The sparse runtime's resident weight format: codebook indices plus column deltas, per row.

A weight matrix ``(rows, K)`` (a Conv2d weight is ``(out, in·kh·kw)``) is stored row by row
as *entries*, each two bytes:

``deltas`` (entries,) uint8
    ``d ≥ 1``: the next non-zero is ``d`` columns after the previous one (the previous
    column is −1 at the start of a row); ``d = 0``: a *filler* that advances 255 columns and
    carries no weight (only for gaps wider than 255, rare at Deep Compression densities).
``codes`` (entries,) uint8
    Index into the layer's ``codebook`` (≤ 256 float values), as in Deep Compression/EIE.
    Layers with more than 256 distinct values keep ``values`` (entries,) float instead and
    an empty ``codes``.
``row_ptr`` (rows + 1,) int32
    Entries of row ``i`` are ``row_ptr[i]:row_ptr[i+1]``.

So a weight costs 2 bytes (plus 4 per row), against 8 for float32 CSR and 4 for dense.
Decoding a column is a running sum of deltas, done on the fly by the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CompactWeight", "compact_from_coo", "compact_from_dense", "decode_dense", "from_layer_code",
]

MAX_CODEBOOK = 256
SPAN = 255  # columns a filler advances


@dataclass
class CompactWeight:
    """One weight matrix in compact form (numpy arrays; see the module docstring)."""

    rows: int
    cols: int
    row_ptr: np.ndarray  # (rows+1,) int32
    deltas: np.ndarray  # (entries,) uint8
    codes: np.ndarray  # (entries,) uint8, or (0,) in raw mode
    codebook: np.ndarray  # (k,) float32, or (0,) in raw mode
    values: np.ndarray  # (entries,) float32 in raw mode, else (0,)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.row_ptr, self.deltas, self.codes, self.codebook, self.values))


def compact_from_coo(
    rows: int,
    cols: int,
    r: np.ndarray,
    c: np.ndarray,
    values: np.ndarray,
    codebook: np.ndarray | None = None,
    codes: np.ndarray | None = None,
) -> CompactWeight:
    """Compact form of the non-zeros at ``(r, c)`` (sorted row-major), shape ``(rows, cols)``.

    Parameters
    ----------
    r, c : ndarray of int, shape (nnz,), sorted by (row, column), no duplicates
    values : ndarray of float, shape (nnz,)
    codebook, codes : optional; the layer's codebook (k,) and each non-zero's index into it.
        Without them a codebook is formed from the distinct values when there are ≤ 256.
    """
    r = np.asarray(r, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    if codebook is None or codes is None or codebook.size > MAX_CODEBOOK:
        codebook, codes = None, None
        uniq, inv = np.unique(values, return_inverse=True)
        if uniq.size <= MAX_CODEBOOK:
            codebook, codes = uniq.astype(np.float32), inv.reshape(-1)
    prev = np.empty_like(c)
    if c.size:
        prev[0] = -1
        prev[1:] = np.where(r[1:] == r[:-1], c[:-1], -1)
    d = c - prev  # (nnz,) >= 1
    fill = (d - 1) // SPAN
    per = fill + 1
    real = np.cumsum(per) - 1  # entry index of each non-zero
    n = int(per.sum())
    deltas = np.zeros(n, dtype=np.uint8)
    deltas[real] = (d - fill * SPAN).astype(np.uint8)
    counts = np.bincount(r, weights=per, minlength=rows).astype(np.int64) if r.size else np.zeros(rows, np.int64)
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    if row_ptr[-1] >= 2**31:
        raise ValueError(f"{n} entries do not fit int32 row pointers")
    if codebook is not None and codes is not None:
        cd = np.zeros(n, dtype=np.uint8)
        cd[real] = np.asarray(codes, dtype=np.int64)
        return CompactWeight(rows, cols, row_ptr.astype(np.int32), deltas, cd,
                             np.asarray(codebook, dtype=np.float32), np.zeros(0, np.float32))
    vals = np.zeros(n, dtype=np.float32)
    vals[real] = values
    return CompactWeight(rows, cols, row_ptr.astype(np.int32), deltas, np.zeros(0, np.uint8),
                         np.zeros(0, np.float32), vals)


def compact_from_dense(w: np.ndarray | torch.Tensor) -> CompactWeight:
    """Compact form of a dense ``(rows, ...)`` weight (trailing dimensions flattened)."""
    a = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    a = a.reshape(a.shape[0], -1).astype(np.float32)
    r, c = np.nonzero(a)
    return compact_from_coo(a.shape[0], a.shape[1], r, c, a[r, c])


def from_layer_code(lc: Any) -> CompactWeight:
    """Compact form straight from a decoded ``.snn`` layer (gaps + codebook indices).

    The codebook of the file is kept and each weight's index into it reused, so no value is
    re-quantised; the dense weight is never built.
    """
    rows = lc.shape[0]
    cols = lc.numel // rows if rows else 0
    pos = lc.real_positions()
    values = lc.real_values()
    codebook = codes = None
    if lc.codebook is not None and lc.mode in ("codebook", "sparse") and lc.codebook.size <= MAX_CODEBOOK:
        s = lc.stream("index")
        codebook, codes = lc.codebook, s[s != 0].astype(np.int64) - 1
    return compact_from_coo(rows, cols, pos // max(cols, 1), pos % max(cols, 1), values, codebook, codes)


def decode_dense(
    row_ptr: torch.Tensor,
    deltas: torch.Tensor,
    codes: torch.Tensor,
    codebook: torch.Tensor,
    values: torch.Tensor,
    cols: int,
) -> torch.Tensor:
    """The dense ``(rows, cols)`` weight from compact buffers, with torch ops (any device).

    Its dtype is the codebook's (or the values'); used where gradients or another device
    are needed.
    """
    rows = row_ptr.numel() - 1
    dtype = codebook.dtype if codes.numel() or values.numel() == 0 else values.dtype
    d = deltas.long()
    inc = torch.where(d == 0, torch.full_like(d, SPAN), d)
    counts = (row_ptr[1:] - row_ptr[:-1]).long()
    rid = torch.repeat_interleave(torch.arange(rows, device=d.device), counts)
    cum = torch.cumsum(inc, 0)  # (entries,)
    starts = row_ptr[:-1].long()
    base = torch.zeros(rows, dtype=cum.dtype, device=d.device)
    if cum.numel():
        base = torch.where(starts > 0, cum[(starts - 1).clamp(min=0)], base)
    col = cum - base[rid] - 1
    real = d != 0
    w = codebook[codes.long()] if codes.numel() else values
    out = torch.zeros(rows * cols, dtype=dtype, device=d.device)
    out[(rid * cols + col)[real]] = w[real].to(dtype)
    return out.reshape(rows, cols)
