"""Max pooling of code maps: local p×p pooling f: (Y, G) → (Z, G') and the spatial pyramid.

Code maps are channels-last tensors ``(N, gh, gw, K)``: ``N`` images, a ``gh × gw`` grid of
patch positions ``G``, and ``K`` codes (atoms) per position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import InvalidInputError, check_int

__all__ = [
    "FEATURE_NORMS",
    "local_max_pool",
    "normalize_features",
    "pooled_grid",
    "pyramid_cells",
    "pyramid_max_pool",
    "pyramid_size",
    "split_polarity",
]

FEATURE_NORMS = (None, "sqrt", "l2", "sqrt+l2")


def _check_map(codes: torch.Tensor) -> None:
    if not isinstance(codes, torch.Tensor) or codes.ndim != 4:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise InvalidInputError(f"codes: expected a tensor of shape (N, gh, gw, K), got {shape}")


def pooled_grid(gh: int, gw: int, size: int = 4, stride: int | None = None) -> tuple[int, int]:
    """The grid ``G' = (gh', gw')`` after :func:`local_max_pool` of a ``gh × gw`` grid."""
    size = check_int(size, "size")
    stride = size if stride is None else check_int(stride, "stride")
    if size > gh or size > gw:
        raise InvalidInputError(
            f"size={size}: pooling window larger than the {gh}×{gw} code grid; "
            f"expected size <= {min(gh, gw)}"
        )
    return (gh - size) // stride + 1, (gw - size) // stride + 1


def local_max_pool(codes: torch.Tensor, size: int = 4, stride: int | None = None) -> torch.Tensor:
    """Max of each code over ``size × size`` neighbourhoods of the grid, every ``stride`` cells.

    Parameters
    ----------
    codes : Tensor, shape (N, gh, gw, K)
    size : neighbourhood side ``p`` (4 in He et al. 2014)
    stride : step between neighbourhoods; default ``size`` (non-overlapping)

    Returns
    -------
    Tensor, shape (N, gh', gw', K) with ``(gh', gw') = pooled_grid(gh, gw, size, stride)``;
    ``out[n, i, j, k] = max(codes[n, i·s : i·s + p, j·s : j·s + p, k])``.
    """
    _check_map(codes)
    stride = size if stride is None else stride
    pooled_grid(codes.shape[1], codes.shape[2], size, stride)  # validates
    x = codes.permute(0, 3, 1, 2)  # (N, K, gh, gw)
    return F.max_pool2d(x, kernel_size=size, stride=stride).permute(0, 2, 3, 1).contiguous()


def pyramid_size(levels: Sequence[int] = (1, 2, 4), overlap: Sequence[int] = ()) -> int:
    """Cells in a pyramid: ``sum(l² for l in levels + overlap)`` (21 for 1×1, 2×2, 4×4)."""
    return sum(int(level) ** 2 for level in (*levels, *overlap))


def _bins(g: int, level: int, overlap: bool) -> list[tuple[int, int]]:
    """[start, end) of each of ``level`` bins along a side of ``g`` cells.

    Plain: ``floor(i·g/l)`` to ``ceil((i+1)·g/l)`` (adaptive pooling's bins). Overlapping:
    ``l`` bins of ``2/(l+1)`` of the side at a step of ``1/(l+1)``, ``floor(i·g/(l+1))`` to
    ``ceil((i+2)·g/(l+1))``, so neighbouring bins share half their cells.
    """
    if overlap:
        return [((i * g) // (level + 1), -((-(i + 2) * g) // (level + 1))) for i in range(level)]
    return [((i * g) // level, -((-(i + 1) * g) // level)) for i in range(level)]


def pyramid_cells(gh: int, gw: int, levels: Sequence[int], overlap: Sequence[int] = ()) -> np.ndarray:
    """The cells of :func:`pyramid_max_pool`, in its output order.

    Parameters
    ----------
    gh, gw : the code grid
    levels : plain levels (``l × l`` disjoint cells, adaptive-pooling bins), each ``l <= g``
    overlap : overlapping levels (``l × l`` cells, each half-overlapping its neighbours),
        each ``l + 1 <= g`` (or ``l == 1``, the whole grid)

    Returns
    -------
    ndarray (n_cells, 4) int64, rows ``[row0, row1, col0, col1)``: the plain levels' cells,
    then the overlapping levels', each level row-major.
    """
    rows = []
    for group, is_overlap in ((levels, False), (overlap, True)):
        for level in group:
            level = check_int(level, "levels")
            need = level + 1 if is_overlap and level > 1 else level
            if need > min(gh, gw):
                raise InvalidInputError(
                    f"levels: {'overlapping ' if is_overlap else ''}level {level} needs a grid "
                    f"of at least {need}×{need}, got {gh}×{gw}"
                )
            for r0, r1 in _bins(gh, level, is_overlap):
                for c0, c1 in _bins(gw, level, is_overlap):
                    rows.append((r0, r1, c0, c1))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def pyramid_max_pool(
    codes: torch.Tensor, levels: Sequence[int] = (1, 2, 4), overlap: Sequence[int] = ()
) -> torch.Tensor:
    """Spatial-pyramid max pooling: each code's max in every cell of an l×l split, all levels.

    Level ``l`` splits the grid into ``l × l`` cells with edges ``floor(i·g/l)`` and
    ``ceil((i+1)·g/l)`` (the bins of :func:`torch.nn.functional.adaptive_max_pool2d`). An
    overlapping level ``l`` (``overlap``) has ``l × l`` cells of ``2/(l+1)`` of each side,
    every ``1/(l+1)`` (:func:`pyramid_cells`).

    Parameters
    ----------
    codes : Tensor, shape (N, gh, gw, K)
    levels : the pyramid's splits, each ``l <= min(gh, gw)``
    overlap : overlapping levels, appended after ``levels``

    Returns
    -------
    Tensor, shape (N, K · pyramid_size(levels, overlap))
        Level-major, then cell row-major, then code: for levels (1, 2), columns ``0:K`` are the
        whole-grid max, ``K:2K`` the top-left cell, ``2K:3K`` the top-right cell, and so on.
    """
    _check_map(codes)
    n, gh, gw, k = codes.shape
    if not levels and not overlap:
        raise InvalidInputError("levels: expected at least one pyramid level")
    cells = pyramid_cells(gh, gw, levels, overlap)
    x = codes.permute(0, 3, 1, 2)  # (N, K, gh, gw)
    parts = []
    for level in levels:  # adaptive pooling: one call per plain level
        pooled = F.adaptive_max_pool2d(x, int(level))  # (N, K, l, l)
        parts.append(pooled.permute(0, 2, 3, 1).reshape(n, int(level) ** 2 * k))
    for r0, r1, c0, c1 in cells[pyramid_size(levels):].tolist():
        parts.append(codes[:, r0:r1, c0:c1, :].amax(dim=(1, 2)))
    return torch.cat(parts, dim=1)


def normalize_features(feats: torch.Tensor, mode: str | None, eps: float = 1e-12) -> torch.Tensor:
    """Normalise pooled features image by image (one layer's block).

    Parameters
    ----------
    feats : Tensor, shape (N, F)
    mode : None (unchanged), ``"sqrt"`` (signed square root, ``sign(x)·sqrt(|x|)``: power
        normalisation), ``"l2"`` (each row divided by ``max(||row||, eps)``) or
        ``"sqrt+l2"`` (the square root, then the row norm)

    Returns
    -------
    Tensor, shape (N, F), float32 (a new tensor unless ``mode`` is None)
    """
    if mode not in FEATURE_NORMS:
        raise InvalidInputError(f"feature_norm={mode!r}: expected one of {FEATURE_NORMS}")
    if mode is None:
        return feats
    out = feats.to(torch.float32)
    if mode.startswith("sqrt"):
        out = out.sign() * out.abs().sqrt()
    if mode.endswith("l2"):
        norm = out.to(torch.float64).norm(dim=1, keepdim=True).clamp_min(eps)
        out = (out.to(torch.float64) / norm).to(torch.float32)
    return out


def split_polarity(codes: torch.Tensor) -> torch.Tensor:
    """``[max(c, 0), max(−c, 0)]`` along the last axis: (..., K) → (..., 2K).

    Max pooling a signed code would keep only its positive excursions; splitting the signs
    first lets pooling keep both (Coates & Ng 2011).
    """
    return torch.cat([codes.clamp_min(0), (-codes).clamp_min(0)], dim=-1)
