"""Max pooling of code maps: local p×p pooling f: (Y, G) → (Z, G') and the spatial pyramid.

Code maps are channels-last tensors ``(N, gh, gw, K)``: ``N`` images, a ``gh × gw`` grid of
patch positions ``G``, and ``K`` codes (atoms) per position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._checks import InvalidInputError, check_int

__all__ = ["pooled_grid", "local_max_pool", "pyramid_max_pool", "pyramid_size", "split_polarity"]


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


def pyramid_size(levels: Sequence[int] = (1, 2, 4)) -> int:
    """Cells in a pyramid: ``sum(l² for l in levels)`` (21 for 1×1, 2×2, 4×4)."""
    return sum(int(level) ** 2 for level in levels)


def pyramid_max_pool(codes: torch.Tensor, levels: Sequence[int] = (1, 2, 4)) -> torch.Tensor:
    """Spatial-pyramid max pooling: each code's max in every cell of an l×l split, all levels.

    Level ``l`` splits the grid into ``l × l`` cells with edges ``floor(i·g/l)`` and
    ``ceil((i+1)·g/l)`` (the bins of :func:`torch.nn.functional.adaptive_max_pool2d`).

    Parameters
    ----------
    codes : Tensor, shape (N, gh, gw, K)
    levels : the pyramid's splits, each ``l <= min(gh, gw)``

    Returns
    -------
    Tensor, shape (N, K · pyramid_size(levels))
        Level-major, then cell row-major, then code: for levels (1, 2), columns ``0:K`` are the
        whole-grid max, ``K:2K`` the top-left cell, ``2K:3K`` the top-right cell, and so on.
    """
    _check_map(codes)
    n, gh, gw, k = codes.shape
    if not levels:
        raise InvalidInputError("levels: expected at least one pyramid level")
    x = codes.permute(0, 3, 1, 2)  # (N, K, gh, gw)
    parts = []
    for level in levels:
        level = check_int(level, "levels")
        if level > min(gh, gw):
            raise InvalidInputError(
                f"levels: level {level} needs a grid of at least {level}×{level}, got {gh}×{gw}"
            )
        pooled = F.adaptive_max_pool2d(x, level)  # (N, K, l, l)
        parts.append(pooled.permute(0, 2, 3, 1).reshape(n, level * level * k))
    return torch.cat(parts, dim=1)


def split_polarity(codes: torch.Tensor) -> torch.Tensor:
    """``[max(c, 0), max(−c, 0)]`` along the last axis: (..., K) → (..., 2K).

    Max pooling a signed code would keep only its positive excursions; splitting the signs
    first lets pooling keep both (Coates & Ng 2011).
    """
    return torch.cat([codes.clamp_min(0), (-codes).clamp_min(0)], dim=-1)
