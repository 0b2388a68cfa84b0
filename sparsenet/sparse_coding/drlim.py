"""DrLIM dimensionality reduction of pooled codes: A(ȳ) = Wȳ learnt with a contrastive loss.

Hadsell, Chopra & LeCun (2006), in the form the DeepSC review uses::

    L_ij = (1 − l_ij) · ½ ||Wȳ_i − Wȳ_j||²  +  l_ij · max(0, β − ||Wȳ_i − Wȳ_j||²)

Similar pairs (``l = 0``) are spatial neighbours in the same image's pooled code map; they
are pulled together. Dissimilar pairs (``l = 1``) are positions far apart in the same image
or positions in two different images; they are pushed at least ``β`` apart (in squared
distance). The projection is linear and trained in torch with Adam from a PCA start.
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import InvalidInputError, as_tensor, check_int, check_positive
from .persist import persistable

__all__ = ["drlim_loss", "sample_pairs", "DrLIM"]


def drlim_loss(
    z_i: torch.Tensor, z_j: torch.Tensor, dissimilar: torch.Tensor, beta: float
) -> torch.Tensor:
    """Mean DrLIM loss over pairs of projected codes.

    Parameters
    ----------
    z_i, z_j : Tensor, shape (P, d)
        The projections ``Wȳ_i`` and ``Wȳ_j`` of the two sides of ``P`` pairs.
    dissimilar : Tensor, shape (P,)
        ``l_ij``: 0 for a similar pair, 1 for a dissimilar pair.
    beta : margin on the squared distance of dissimilar pairs.

    Returns
    -------
    Tensor, scalar: ``mean_p[(1 − l) · ½ d² + l · max(0, β − d²)]`` with ``d² = ||z_i − z_j||²``.
    """
    d2 = (z_i - z_j).pow(2).sum(dim=1)  # (P,)
    lab = dissimilar.to(d2.dtype)
    return ((1 - lab) * 0.5 * d2 + lab * torch.clamp(beta - d2, min=0)).mean()


def sample_pairs(
    shape: tuple[int, int, int],
    n_pairs: int,
    generator: torch.Generator,
    radius: int = 1,
    far: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pairs of positions on ``N`` code grids of ``gh × gw``, half similar, half not.

    Parameters
    ----------
    shape : (N, gh, gw)
    n_pairs : pairs to draw (at least 2)
    generator : torch RNG, for reproducibility
    radius : similar pairs are distinct positions of one image within this Chebyshev distance
    far : dissimilar same-image pairs are at least this Chebyshev distance apart
        (default ``max(gh, gw) // 2``); when no such positions exist, or for half of the
        dissimilar pairs, the second position is in another image.

    Returns
    -------
    idx_i, idx_j : LongTensor, shape (P, 3), rows ``(n, row, col)``
    dissimilar : Tensor, shape (P,), 0 or 1
    """
    n, gh, gw = shape
    far = max(gh, gw) // 2 if far is None else far
    n_sim = n_pairs // 2
    n_dis = n_pairs - n_sim

    def rand(high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=generator)

    # similar: a position and a neighbour at offset (dr, dc) != (0, 0), clipped to the grid
    img, r, c = rand(n, n_sim), rand(gh, n_sim), rand(gw, n_sim)
    dr, dc = rand(2 * radius + 1, n_sim) - radius, rand(2 * radius + 1, n_sim) - radius
    dc = torch.where((dr == 0) & (dc == 0), torch.ones_like(dc), dc)
    r2 = _reflect(r, dr, gh)
    c2 = _reflect(c, dc, gw)
    sim_i = torch.stack([img, r, c], 1)
    sim_j = torch.stack([img, r2, c2], 1)

    # dissimilar: far apart in the same image, or anywhere in another image
    img, r, c = rand(n, n_dis), rand(gh, n_dis), rand(gw, n_dis)
    img2, r2, c2 = rand(n, n_dis), rand(gh, n_dis), rand(gw, n_dis)
    is_far = torch.maximum((r - r2).abs(), (c - c2).abs()) >= max(far, 1)
    other = torch.arange(n_dis) % 2 == 1
    same = ~other & is_far
    if n > 1:
        shift = 1 + rand(n - 1, n_dis)  # a different image
        img2 = torch.where(same, img, (img + shift) % n)
    else:
        img2 = img.clone()
    dis_i = torch.stack([img, r, c], 1)
    dis_j = torch.stack([img2, r2, c2], 1)

    labels = torch.cat([torch.zeros(n_sim), torch.ones(n_dis)])
    return torch.cat([sim_i, dis_i]), torch.cat([sim_j, dis_j]), labels


def _reflect(pos: torch.Tensor, step: torch.Tensor, size: int) -> torch.Tensor:
    """``pos + step``, or ``pos − step`` where that leaves ``[0, size)`` (so the pair stays distinct)."""
    out = pos + step
    out = torch.where((out < 0) | (out >= size), pos - step, out)
    return out.clamp(0, size - 1)


@persistable
class DrLIM:
    """Linear DrLIM projection of code maps, scikit-learn style.

    Parameters
    ----------
    n_components : output dimension ``d`` of ``W`` (shape (d, K))
    beta : margin on dissimilar pairs' squared distance; ``None`` sets it to the mean squared
        distance of dissimilar pairs under the initial (PCA) projection
    n_iter : Adam steps
    batch_pairs : pairs per step
    lr : Adam learning rate
    radius, far : see :func:`sample_pairs`
    random_state : seed for the pair sampler

    Attributes
    ----------
    components_ : Tensor, shape (d, K), the learnt ``W``
    beta_ : float, the margin used
    loss_curve_ : list of float, the loss at each step
    """

    def __init__(
        self,
        n_components: int = 64,
        beta: float | None = None,
        n_iter: int = 300,
        batch_pairs: int = 4096,
        lr: float = 0.01,
        radius: int = 1,
        far: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.beta = beta
        self.n_iter = n_iter
        self.batch_pairs = batch_pairs
        self.lr = lr
        self.radius = radius
        self.far = far
        self.random_state = random_state

    def fit(self, maps: Any) -> DrLIM:
        """Learn ``W`` from code maps of shape (N, gh, gw, K)."""
        y = as_tensor(maps, "maps", 4)
        n, gh, gw, k = y.shape
        d = check_int(self.n_components, "n_components")
        if d > k:
            raise InvalidInputError(f"n_components={d}: more than the {k} input codes")
        check_int(self.n_iter, "n_iter", 0)
        check_positive(self.lr, "lr")
        pairs = check_int(self.batch_pairs, "batch_pairs", 2)
        gen = torch.Generator().manual_seed(int(self.random_state))
        flat = y.reshape(n * gh * gw, k)

        # PCA start: the top-d principal directions of the pooled codes
        sample = flat[torch.randint(0, len(flat), (min(len(flat), 20000),), generator=gen)]
        centred = (sample - sample.mean(0)).double()
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        w = vh[:d].float().clone().requires_grad_(True)  # (d, K)

        def gather(idx: torch.Tensor) -> torch.Tensor:
            return flat[(idx[:, 0] * gh + idx[:, 1]) * gw + idx[:, 2]]  # (P, K)

        if self.beta is None:
            ii, jj, lab = sample_pairs((n, gh, gw), 4 * pairs, gen, self.radius, self.far)
            with torch.no_grad():
                diff = (gather(ii) - gather(jj))[lab == 1] @ w.T
            beta = float(diff.pow(2).sum(1).mean())
        else:
            beta = check_positive(self.beta, "beta")
        opt = torch.optim.Adam([w], lr=self.lr)
        curve: list[float] = []
        for _ in range(self.n_iter):
            ii, jj, lab = sample_pairs((n, gh, gw), pairs, gen, self.radius, self.far)
            loss = drlim_loss(gather(ii) @ w.T, gather(jj) @ w.T, lab, beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(float(loss.detach()))
        self.components_ = w.detach()
        self.beta_ = beta
        self.loss_curve_ = curve
        return self

    def transform(self, maps: torch.Tensor) -> torch.Tensor:
        """Project codes: (..., K) → (..., d), ``A(ȳ) = Wȳ``."""
        return maps @ self.components_.T

    def fit_transform(self, maps: Any) -> torch.Tensor:
        return self.fit(maps).transform(as_tensor(maps, "maps", 4))

    def score(self, maps: Any, n_pairs: int = 8192) -> float:
        """Mean DrLIM loss of the fitted ``W`` on freshly sampled pairs of ``maps`` (lower is better)."""
        y = as_tensor(maps, "maps", 4)
        n, gh, gw, k = y.shape
        gen = torch.Generator().manual_seed(int(self.random_state) + 1)
        ii, jj, lab = sample_pairs((n, gh, gw), n_pairs, gen, self.radius, self.far)
        zi = y[ii[:, 0], ii[:, 1], ii[:, 2]] @ self.components_.T
        zj = y[jj[:, 0], jj[:, 1], jj[:, 2]] @ self.components_.T
        return float(drlim_loss(zi, zj, lab, self.beta_))
