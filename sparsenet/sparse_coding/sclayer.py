"""One fitted DeepSC layer: patches → sparse codes → pooled features, two ways.

:meth:`SCLayer.encode_pool` is the fast path: one compiled call per chunk of images
(:mod:`.layer_kernel`) that encodes every patch and max-pools its codes straight into the
pyramid features and the local map, never holding the code tensor. :meth:`SCLayer.codes`
is the torch path it replaced (``sparse_encode`` over all patches, then pooling in torch);
it stays as the reference the fast path is tested and benchmarked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .drlim import DrLIM
from .patches import ZCAWhitener, extract_patches, normalize_patches
from .persist import persistable

__all__ = ["SCLayer", "encode_reference", "learn_dictionary"]


def encode_reference(
    x: torch.Tensor, atoms: torch.Tensor, alpha: float, max_iter: int
) -> torch.Tensor:
    """Lasso codes of the rows of ``x`` (n, P) on ``atoms`` (K, P): (n, K), float32.

    The torch encoder DeepSC used before :mod:`.layer_kernel`: ``max_iter`` FISTA
    iterations (``tol=0``, an approximate but fixed-cost encoder), sharded over ranks
    under torch.distributed.
    """
    from ..distributed import map_rows
    from .encode import sparse_encode

    return map_rows(
        lambda rows: sparse_encode(rows, atoms, alpha, method="fista", max_iter=max_iter, tol=0.0),
        x,
    )


def learn_dictionary(
    x: torch.Tensor, n_components: int, alpha: float, n_epochs: int, seed: int, tol: float
) -> torch.Tensor:
    """A dictionary (n_components, P) with unit-norm rows, learnt online on the rows of ``x``."""
    from .estimators import DictionaryLearner

    learner = DictionaryLearner(
        n_components=n_components,
        alpha=alpha,
        max_iter=n_epochs,
        batch_size=1024,
        method="fista",
        tol=tol,
        random_state=seed,
    ).fit(x)
    return torch.as_tensor(learner.components_, dtype=torch.float32)


@persistable
@dataclass
class SCLayer:
    """The fitted state of one DeepSC layer.

    Attributes
    ----------
    size, stride : patch geometry
    eps : absolute variance regulariser of :func:`normalize_patches`
    whitener : ZCA fitted on normalised patches, or None
    atoms : Tensor, shape (K, P), the dictionary (rows are atoms)
    alpha : lasso penalty
    reducer : DrLIM projection applied after local pooling, or None
    """

    size: int
    stride: int
    eps: float
    whitener: ZCAWhitener | None
    atoms: torch.Tensor
    alpha: float
    reducer: DrLIM | None = None

    def patches(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, h, w, c) input map → (N, gh, gw, P) normalised (and whitened) patches."""
        p = extract_patches(maps.permute(0, 3, 1, 2), self.size, self.stride)
        p = normalize_patches(p, self.eps)
        return self.whitener.transform(p) if self.whitener is not None else p

    def codes(self, maps: torch.Tensor, max_iter: int) -> torch.Tensor:
        """(N, h, w, c) → sparse codes (N, gh, gw, K) by the torch reference encoder."""
        p = self.patches(maps)
        n, gh, gw, dim = p.shape
        c = encode_reference(p.reshape(-1, dim), self.atoms, self.alpha, max_iter)
        return torch.as_tensor(c, dtype=torch.float32).reshape(n, gh, gw, -1)

    def encode_pool(
        self,
        maps: torch.Tensor,
        *,
        method: str = "fista",
        max_iter: int = 5,
        tol: float = 0.0,
        polarity: bool = True,
        levels: Sequence[int] | None = (1, 2, 4),
        overlap: Sequence[int] = (),
        pool: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Pyramid features and local max-pooled codes of (N, h, w, c) maps, one compiled call.

        Parameters
        ----------
        method : ``"fista"`` (the reference encoder's codes: ``max_iter`` FISTA iterations)
            or ``"cd"`` (the exact lasso, duality gap ≤ ``tol · ||x||²``)
        polarity : pool ``split_polarity`` of the codes (K' = 2K) instead of the codes (K)
        levels : pyramid levels for the features, or None for no features
        overlap : overlapping pyramid levels, after ``levels`` (:func:`.pooling.pyramid_cells`)
        pool : (p, s) local max pooling, or None for no pooled map

        Returns
        -------
        features : Tensor (N, K' · Σ l²) or None, as ``pyramid_max_pool(codes', levels,
            overlap)``
        pooled : Tensor (N, gh', gw', K') or None, as ``local_max_pool(codes', p, s)``
        """
        from .layer_kernel import layer_kernel

        w = self.whitener
        feats, pooled = layer_kernel(
            maps.contiguous().numpy(),
            size=self.size,
            stride=self.stride,
            eps=self.eps,
            atoms=self.atoms.numpy(),
            alpha=self.alpha,
            whiten_mean=None if w is None else w.mean_.numpy(),
            whitening=None if w is None else w.whitening_.numpy(),
            solver=method,
            max_iter=max_iter,
            tol=tol,
            polarity=polarity,
            levels=tuple(levels or (() if overlap else (1,))),
            overlap=tuple(overlap),
            pool=pool,
            want_feats=levels is not None,
        )
        return (
            None if feats is None else torch.from_numpy(feats),
            None if pooled is None else torch.from_numpy(np.ascontiguousarray(pooled)),
        )
