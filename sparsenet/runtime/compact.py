"""The sparse runtime's resident weight format: packed 16-bit entries, per row segment.

A weight matrix ``(rows, K)`` (a Conv2d weight is ``(out, in·kh·kw)``) is cut into column
*segments* of ``2**colbits`` columns; each non-zero is one 16-bit *entry*::

    entry = (code << colbits) | (column - segment_start)

``entries`` (nnz,) uint16
    Sorted by (row, column). ``code`` is the index into the layer's ``codebook`` (≤ 256
    float values, as in Deep Compression and EIE); ``colbits = 16 − codebits`` where
    ``codebits`` are the bits of the largest code, capped at the bits the columns need. In
    *value* mode (more than 256 distinct values, or no codebook) ``codebits = 0`` and
    ``values`` (nnz,) float holds the weights.
``seg_ptr`` (rows·nseg + 1,) int32
    Entries of row ``i``, segment ``s`` are ``seg_ptr[i·nseg + s] : seg_ptr[i·nseg + s + 1]``;
    ``nseg = ceil(K / 2**colbits)`` — 1 for every layer of the registry models.

So a shared weight costs 2 bytes (plus 4 per row and segment), against 8 for float32 CSR and
4 for dense. Unlike a running sum of column gaps, every entry decodes on its own (a shift
and a mask), so the batch-1 kernels keep several independent sums in flight; this measured
1.6× faster than the gap form on a random layer of LeNet-300 fc1's shape (300 × 784, 8 %;
``docs/runtime.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CompactWeight", "compact_from_coo", "compact_from_dense", "decode_dense", "from_layer_code",
    "MAX_CODEBOOK",
]

MAX_CODEBOOK = 256
ENTRY_BITS = 16


@dataclass
class CompactWeight:
    """One weight matrix in compact form (numpy arrays; see the module docstring)."""

    rows: int
    cols: int
    colbits: int
    seg_ptr: np.ndarray  # (rows·nseg + 1,) int32
    entries: np.ndarray  # (nnz,) uint16
    codebook: np.ndarray  # (k,) float32, or (0,) in value mode
    values: np.ndarray  # (nnz,) float32 in value mode, else (0,)

    @property
    def nseg(self) -> int:
        return segments(self.cols, self.colbits)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.seg_ptr, self.entries, self.codebook, self.values))


def segments(cols: int, colbits: int) -> int:
    """Column segments of ``2**colbits`` columns that cover ``cols`` (at least 1)."""
    return max(1, -(-cols // (1 << colbits)))


def _bits(n: int) -> int:
    """Bits to write the integers 0..n (0 for n = 0)."""
    return int(n).bit_length()


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
    codebits = _bits(int(np.max(codes))) if codes is not None and codes.size else 0
    if codebook is None:
        codebits = 0
    colbits = min(ENTRY_BITS - codebits, max(1, _bits(cols - 1)))
    nseg = segments(cols, colbits)
    seg = r * nseg + (c >> colbits)  # (nnz,) segment of each non-zero, ascending
    counts = np.bincount(seg, minlength=rows * nseg) if seg.size else np.zeros(rows * nseg, np.int64)
    seg_ptr = np.zeros(rows * nseg + 1, dtype=np.int64)
    np.cumsum(counts, out=seg_ptr[1:])
    if seg_ptr[-1] >= 2**31:
        raise ValueError(f"{int(seg_ptr[-1])} entries do not fit int32 segment pointers")
    entries = c & ((1 << colbits) - 1)
    if codebook is not None and codes is not None:
        entries = entries | (np.asarray(codes, dtype=np.int64) << colbits)
        return CompactWeight(rows, cols, colbits, seg_ptr.astype(np.int32), entries.astype(np.uint16),
                             np.asarray(codebook, dtype=np.float32), np.zeros(0, np.float32))
    return CompactWeight(rows, cols, colbits, seg_ptr.astype(np.int32), entries.astype(np.uint16),
                         np.zeros(0, np.float32), values)


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
    seg_ptr: torch.Tensor,
    entries: torch.Tensor,
    codebook: torch.Tensor,
    values: torch.Tensor,
    cols: int,
    colbits: int,
) -> torch.Tensor:
    """The dense ``(rows, cols)`` weight from compact buffers, with torch ops (any device).

    Its dtype is the codebook's in codebook mode, the values' otherwise; used where
    gradients or another device are needed.
    """
    nseg = segments(cols, colbits)
    rows = (seg_ptr.numel() - 1) // nseg
    value_mode = values.numel() > 0 or codebook.numel() == 0
    dtype = values.dtype if value_mode else codebook.dtype
    e = entries.long()
    counts = (seg_ptr[1:] - seg_ptr[:-1]).long()
    sid = torch.repeat_interleave(torch.arange(rows * nseg, device=e.device), counts)  # (nnz,)
    col = (sid % nseg) * (1 << colbits) + (e & ((1 << colbits) - 1))
    w = values if value_mode else codebook[e >> colbits]
    out = torch.zeros(rows * cols, dtype=dtype, device=e.device)
    out[(sid // nseg) * cols + col] = w.to(dtype)
    return out.reshape(rows, cols)
