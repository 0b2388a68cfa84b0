"""Patches from images or code maps: extraction with size/stride, normalisation, ZCA whitening.

A patch grid is the first step of every DeepSC layer: the images (or the previous layer's
pooled code map) are cut into ``size × size`` windows every ``stride`` pixels, each window
flattened to a vector, contrast-normalised and optionally whitened.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._checks import InvalidInputError, as_tensor, check_int, check_positive
from .persist import persistable

__all__ = ["patch_grid", "extract_patches", "normalize_patches", "ZCAWhitener"]


def patch_grid(height: int, width: int, size: int, stride: int = 1) -> tuple[int, int]:
    """Number of patch positions ``(gh, gw)`` along each axis of an ``height × width`` image.

    Windows start at ``0, stride, 2·stride, …`` and must fit entirely inside the image.
    """
    size = check_int(size, "size")
    stride = check_int(stride, "stride")
    if size > height or size > width:
        raise InvalidInputError(
            f"size={size}: larger than the {height}×{width} input; expected size <= {min(height, width)}"
        )
    return (height - size) // stride + 1, (width - size) // stride + 1


def extract_patches(images: Any, size: int, stride: int = 1) -> torch.Tensor:
    """All ``size × size`` patches of a batch of images, on a regular grid.

    Parameters
    ----------
    images : array or Tensor, shape (N, C, H, W) (or (N, H, W) for one channel)
    size : patch side in pixels
    stride : step between patch origins

    Returns
    -------
    Tensor, shape (N, gh, gw, C·size·size), float32
        ``gh, gw = patch_grid(H, W, size, stride)``; each patch is flattened channel-major
        ``(c, i, j)``, the layout of :func:`torch.nn.functional.unfold`.
    """
    x = as_tensor(images, "images", (3, 4))
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (N, 1, H, W)
    n, c, h, w = x.shape
    gh, gw = patch_grid(h, w, size, stride)
    cols = F.unfold(x, kernel_size=size, stride=stride)  # (N, C·size², gh·gw)
    return cols.transpose(1, 2).reshape(n, gh, gw, c * size * size)


def normalize_patches(
    patches: torch.Tensor, eps: float = 0.01, center: bool = True
) -> torch.Tensor:
    """Per-patch contrast normalisation: ``(p − mean(p)) / sqrt(var(p) + eps)``.

    Parameters
    ----------
    patches : Tensor, shape (..., D)
    eps : added to each patch's variance, so flat patches (blank background) stay near 0
        instead of having their noise amplified. ``eps`` is in the patch's squared units.
    center : subtract each patch's mean first (brightness invariance). With ``center=False``
        the patch is divided by ``sqrt(mean(p²) + eps)`` (for non-negative code maps).

    Returns
    -------
    Tensor, same shape as ``patches``.
    """
    eps = check_positive(eps, "eps")
    if center:
        p = patches - patches.mean(dim=-1, keepdim=True)
    else:
        p = patches
    var = p.pow(2).mean(dim=-1, keepdim=True)
    return p / torch.sqrt(var + eps)


@persistable
class ZCAWhitener:
    """ZCA whitening of patch vectors: ``(x − mean) · U diag(1/sqrt(s + eps)) Uᵀ``.

    Follows scikit-learn's contract: ``__init__`` stores ``eps``; :meth:`fit` sets ``mean_``
    (shape (D,)) and ``whitening_`` (shape (D, D), symmetric).

    Parameters
    ----------
    eps : regulariser added to the eigenvalues of the covariance; larger values whiten less.
    """

    def __init__(self, eps: float = 0.1) -> None:
        self.eps = eps

    def fit(self, patches: Any) -> ZCAWhitener:
        """Estimate mean and whitening matrix from ``patches`` of shape (n, D)."""
        eps = check_positive(self.eps, "eps")
        x = as_tensor(patches, "patches", 2).double()
        if x.shape[0] < 2:
            raise InvalidInputError(f"patches: need at least 2 rows to fit ZCA, got {x.shape[0]}")
        mean = x.mean(dim=0)
        xc = x - mean
        cov = xc.T @ xc / (x.shape[0] - 1)  # (D, D)
        s, u = torch.linalg.eigh(cov)
        self.mean_ = mean.float()
        self.whitening_ = ((u / torch.sqrt(s.clamp_min(0) + eps)) @ u.T).float()
        return self

    def transform(self, patches: torch.Tensor) -> torch.Tensor:
        """Whiten ``patches`` of shape (..., D); returns the same shape."""
        return (patches - self.mean_) @ self.whitening_

    def fit_transform(self, patches: Any) -> torch.Tensor:
        return self.fit(patches).transform(as_tensor(patches, "patches", 2))
