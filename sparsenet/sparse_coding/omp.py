"""Batch orthogonal matching pursuit (Rubinstein, Zibulevsky & Elad 2008) in torch.

All samples advance together: at step t each picks the atom most correlated with its
residual, the Cholesky factor of its Gram block ``G[S, S]`` grows by one row (a batched
triangular solve), and the least-squares coefficients on the support are re-solved. A
sample leaves the batch when its squared residual norm reaches ``tol`` or when the new atom
is linearly dependent on the chosen ones (scikit-learn's ``orthogonal_mp_gram`` stops
there too).

Hand-written because scikit-learn's ``orthogonal_mp_gram`` loops over samples in Python.
"""

from __future__ import annotations

import torch

__all__ = ["omp_gram"]


def omp_gram(
    G: torch.Tensor,
    B: torch.Tensor,
    xsq: torch.Tensor,
    n_nonzero_coefs: int,
    tol: float,
) -> torch.Tensor:
    """Codes (n, n_atoms) with at most ``n_nonzero_coefs`` non-zeros per row.

    Parameters
    ----------
    G : Tensor (n_atoms, n_atoms)
        Gram matrix ``D Dᵀ``.
    B : Tensor (n, n_atoms)
        Correlations ``X Dᵀ``.
    xsq : Tensor (n,)
        Squared norms of the samples.
    n_nonzero_coefs : int
        Maximum support size.
    tol : float
        Stop a sample once ``||x − cD||² ≤ tol``.
    """
    n, k = B.shape
    dtype, dev = B.dtype, B.device
    out = torch.zeros(n, k, dtype=dtype, device=dev)
    eps = torch.finfo(dtype).eps
    rows = torch.arange(n, device=dev)
    Bt, err = B, xsq.clone()
    corr = B.clone()
    idx = torch.zeros(n, 0, dtype=torch.long, device=dev)  # chosen atoms, (r, t)
    L = torch.zeros(n, 0, 0, dtype=dtype, device=dev)  # Cholesky of G[S, S], (r, t, t)
    gamma = torch.zeros(n, 0, dtype=dtype, device=dev)
    taken = torch.zeros(n, k, dtype=torch.bool, device=dev)
    for t in range(min(n_nonzero_coefs, k)):
        done = err <= tol
        if t > 0:
            out[rows[done, None], idx[done]] = gamma[done]
        if bool(done.all()):
            return out
        if bool(done.any()):
            keep = ~done
            rows, Bt, err, corr = rows[keep], Bt[keep], err[keep], corr[keep]
            idx, L, gamma, taken = idx[keep], L[keep], gamma[keep], taken[keep]
        r = rows.shape[0]
        score = corr.abs().masked_fill(taken, -1.0)
        j = score.argmax(1)  # (r,)
        gjj = G[j, j]
        if t == 0:
            diag = gjj
            w = torch.zeros(r, 0, dtype=dtype, device=dev)
        else:
            g_sj = G[idx, j[:, None]]  # (r, t)
            w = torch.linalg.solve_triangular(L, g_sj[:, :, None], upper=False)[:, :, 0]
            diag = gjj - (w * w).sum(1)
        dependent = diag <= eps * gjj.clamp(min=eps)
        if bool(dependent.any()):
            # these samples stop with their current support (as scikit-learn does)
            if t > 0:
                out[rows[dependent, None], idx[dependent]] = gamma[dependent]
            keep = ~dependent
            if not bool(keep.any()):
                return out
            rows, Bt, err, corr = rows[keep], Bt[keep], err[keep], corr[keep]
            idx, L, gamma, taken = idx[keep], L[keep], gamma[keep], taken[keep]
            j, w, diag = j[keep], w[keep], diag[keep]
            r = rows.shape[0]
        Ln = torch.zeros(r, t + 1, t + 1, dtype=dtype, device=dev)
        Ln[:, :t, :t] = L
        Ln[:, t, :t] = w
        Ln[:, t, t] = diag.sqrt()
        L = Ln
        idx = torch.cat([idx, j[:, None]], 1)
        taken[torch.arange(r, device=dev), j] = True
        b_s = Bt.gather(1, idx)  # (r, t+1)
        gamma = torch.cholesky_solve(b_s[:, :, None], L)[:, :, 0]
        corr = Bt - torch.bmm(gamma[:, None, :], G[idx])[:, 0, :]  # (r, k)
        err = (err.new_tensor(0) + xsq[rows] - (gamma * b_s).sum(1)).clamp(min=0)
    out[rows[:, None], idx] = gamma
    return out
