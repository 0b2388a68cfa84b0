"""Deep Compression's sparse index storage: relative gaps with filler entries.

The non-zeros of a weight tensor are taken in row-major order. Each is stored as the gap
``d = p_i - p_{i-1}`` (``p_{-1} = -1``, so ``d >= 1``) written as the symbol ``d - 1`` in
``b`` bits. When ``d > 2**b`` a *filler* entry of gap ``2**b`` and weight zero is inserted
(as many as needed), exactly as in Han et al. (2016), Fig. 2. The weight of each entry is
a codebook index symbol: 0 for a filler (zero), ``c + 1`` for centroid ``c``. Layers whose
non-zeros are not shared keep float32 values per entry instead (fillers hold 0.0, which a
real non-zero never equals).

All functions are vectorised over the entries; nothing loops per weight in Python.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gap_stream", "positions_from_gaps", "codebook_symbols", "csr_from_positions"]


def gap_stream(positions: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Gap symbols for sorted flat ``positions``, with fillers.

    Parameters
    ----------
    positions : ndarray of int, shape (nnz,), strictly increasing, >= 0
    index_bits : int
        ``b``: each gap symbol lies in ``[0, 2**b)``.

    Returns
    -------
    gaps : ndarray of int64, shape (entries,)
        ``d - 1`` per entry, entries = nnz + fillers.
    real : ndarray of int64, shape (nnz,)
        Entry index of each real non-zero (the others are fillers).
    """
    p = np.asarray(positions, dtype=np.int64)
    span = 1 << index_bits
    d = np.diff(np.concatenate(([-1], p)))  # (nnz,) >= 1
    fill = (d - 1) >> index_bits  # fillers before each non-zero
    per = fill + 1
    real = np.cumsum(per) - 1  # (nnz,) entry index of each real non-zero
    gaps = np.full(int(per.sum()), span - 1, dtype=np.int64)
    gaps[real] = d - fill * span - 1
    return gaps, real


def positions_from_gaps(gaps: np.ndarray) -> np.ndarray:
    """Flat position of every entry (fillers included): ``cumsum(gap + 1) - 1``."""
    return np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1


def codebook_symbols(values: np.ndarray, codebook: np.ndarray) -> np.ndarray | None:
    """Symbol ``c + 1`` of each non-zero value in the sorted ``codebook``; None if one is missing."""
    if codebook.size == 0:
        return None if values.size else np.zeros(0, dtype=np.int64)
    idx = np.searchsorted(codebook, values)
    idx = np.minimum(idx, codebook.size - 1)
    if not np.array_equal(codebook[idx], values):
        return None
    return idx.astype(np.int64) + 1


def csr_from_positions(
    positions: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``crow_indices`` (rows + 1,) and ``col_indices`` (nnz,) of flat row-major positions."""
    rows, cols = shape
    r = positions // cols
    crow = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=rows), out=crow[1:])
    return crow, (positions - r * cols).astype(np.int64)
