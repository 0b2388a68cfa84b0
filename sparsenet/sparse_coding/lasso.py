"""Batched lasso solvers in torch: FISTA and working-set coordinate descent.

Every function here works on the Gram form of the problem, for all samples at once::

    G = D Dᵀ        (n_atoms, n_atoms)
    B = X Dᵀ        (n_samples, n_atoms)   correlations of the data with the atoms
    xsq = ||x_i||²  (n_samples,)

and minimises, for every row ``c`` of ``C`` (one sample), the scikit-learn objective

    P(c) = ½ ||x − c D||² + α ||c||₁        (optionally with c ≥ 0)

Both solvers stop a sample as soon as its duality gap is at most ``tol · ||x||²`` (the
scale scikit-learn's ``Lasso`` uses for ``tol``), and drop it from the batch.

Hand-written rather than calling scikit-learn: sklearn solves one sample at a time in
Cython (``Lasso`` per row), while these kernels do every step for a whole batch with one
BLAS call; ``benchmarks/bench_sparse_coding.py`` measures the difference.
"""

from __future__ import annotations

import torch

__all__ = ["lasso_objective_gram", "duality_gap_gram", "lasso_gram"]


def _soft(z: torch.Tensor, thresh: float | torch.Tensor, positive: bool) -> torch.Tensor:
    if positive:
        return torch.clamp(z - thresh, min=0)
    return torch.sign(z) * torch.clamp(z.abs() - thresh, min=0)


def lasso_objective_gram(
    C: torch.Tensor, G: torch.Tensor, B: torch.Tensor, xsq: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Per-sample objective ``½||x − cD||² + α||c||₁`` from the Gram form, shape (n,)."""
    rsq = xsq - 2 * (C * B).sum(1) + (C * (C @ G)).sum(1)
    return 0.5 * rsq.clamp(min=0) + alpha * C.abs().sum(1)


def duality_gap_gram(
    C: torch.Tensor,
    Q: torch.Tensor,
    B: torch.Tensor,
    xsq: torch.Tensor,
    alpha: float,
    positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (primal objective, duality gap), each of shape (n,).

    ``Q = B − C G`` holds the correlations of each residual with the atoms. The dual point is
    the residual scaled into the feasible set ``|⟨d_k, θ⟩| ≤ α`` (``≤ α`` when positive).
    ``C`` and ``Q`` may be restricted to any column subset that contains the support of C.
    """
    cb = (C * B).sum(1)
    rsq = (xsq - cb - (C * Q).sum(1)).clamp(min=0)  # ||x − cD||²
    primal = 0.5 * rsq + alpha * C.abs().sum(1)
    if Q.shape[1] == 0:
        worst = torch.zeros_like(xsq)
    else:
        worst = Q.amax(1) if positive else Q.abs().amax(1)
    scale = torch.where(worst > alpha, alpha / worst.clamp(min=1e-300), torch.ones_like(worst))
    dual = scale * (xsq - cb) - 0.5 * scale * scale * rsq
    return primal, (primal - dual).clamp(min=0)


def _newton_on_block(
    cw: torch.Tensor, gw: torch.Tensor, bw: torch.Tensor, alpha: float, positive: bool
) -> torch.Tensor:
    """Active-set Newton step on each row's support and sign pattern within its block.

    With support ``S`` and signs ``s`` fixed the objective is a quadratic whose minimiser is
    ``z = G_SS⁻¹ (b_S − α s)`` (one batched Cholesky solve). If z keeps the signs it is the
    exact lasso optimum on S; otherwise step from ``c_S`` towards z until the first
    coefficient reaches zero and drop it (the classic active-set step, a descent step).
    ``cw`` (r, m) codes on the block, ``gw`` (r, m, m) Gram blocks, ``bw`` (r, m).
    """
    r, m = cw.shape
    supp = cw != 0
    sizes = supp.sum(1)
    s = int(sizes.max()) if r else 0
    if s == 0:
        return cw
    order = torch.argsort((~supp).to(torch.int8), dim=1, stable=True)[:, :s]  # (r, s)
    valid = torch.arange(s, device=cw.device)[None, :] < sizes[:, None]  # (r, s)
    ar = torch.arange(r, device=cw.device)[:, None, None]
    gss = gw[ar, order[:, :, None], order[:, None, :]]  # (r, s, s)
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(s, dtype=cw.dtype, device=cw.device).expand(r, s, s)
    gss = torch.where(pair, gss, eye)
    signs = torch.sign(cw.gather(1, order))
    rhs = torch.where(valid, bw.gather(1, order) - alpha * signs, torch.zeros_like(signs))
    chol, info = torch.linalg.cholesky_ex(gss)
    z = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    z = torch.where(valid, z, torch.zeros_like(z))
    # active-set step: go from c_S towards z until the first coefficient reaches zero
    c_s = cw.gather(1, order)
    cross = valid & (z * signs <= 0)
    ratio = torch.where(cross, c_s / torch.where(cross, c_s - z, torch.ones_like(z)), 2.0)
    t_star = ratio.amin(1, keepdim=True).clamp(max=1.0)  # (r, 1)
    z = torch.where(cross & (ratio <= t_star), 0.0, c_s + t_star * (z - c_s))
    cand = torch.zeros_like(cw).scatter_(1, order, z)
    ok = (info == 0) & torch.isfinite(z).all(1)
    better = _block_objective(cand, gw, bw, alpha) <= _block_objective(cw, gw, bw, alpha)
    return torch.where((ok & better)[:, None], cand, cw)


def _block_objective(
    cw: torch.Tensor, gw: torch.Tensor, bw: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Block objective without the constant ½||x||²: ½ cGcᵀ − c·b + α|c|₁, shape (r,)."""
    cg = torch.bmm(cw[:, None, :], gw)[:, 0, :]
    return 0.5 * (cg * cw).sum(1) - (cw * bw).sum(1) + alpha * cw.abs().sum(1)


def _cd_sweep(
    cw: torch.Tensor,
    qw: torch.Tensor,
    gw: torch.Tensor,
    dw: torch.Tensor,
    iw: torch.Tensor,
    alpha: float,
    positive: bool,
) -> None:
    """One cyclic coordinate-descent sweep over the block positions, in place."""
    for j in range(cw.shape[1]):
        c_old = cw[:, j]
        c_new = _soft(qw[:, j] + dw[:, j] * c_old, alpha, positive) * iw[:, j]
        delta = c_new - c_old
        cw[:, j] = c_new
        qw -= delta[:, None] * gw[:, j, :]


def _solve_block(
    cw: torch.Tensor,
    gw: torch.Tensor,
    bw: torch.Tensor,
    xs: torch.Tensor,
    alpha: float,
    positive: bool,
    inner: str,
    budget: int,
    tol: float,
) -> tuple[torch.Tensor, int]:
    """Solve the lasso restricted to each row's block; returns (codes on block, sweeps used).

    Rounds of two CD sweeps (or ten FISTA iterations) followed by a Newton step on the
    support, until every row's block duality gap is ≤ ``tol · ||x||²`` or ``budget`` runs out.
    """
    r, m = cw.shape
    out = cw.clone()
    idx = torch.arange(r, device=cw.device)
    dw = torch.diagonal(gw, dim1=1, dim2=2)
    iw = torch.where(dw > 0, 1.0 / dw.clamp(min=1e-300), torch.zeros_like(dw))
    used = 0
    y, t = cw.clone(), torch.ones(r, dtype=cw.dtype, device=cw.device)
    if inner == "fista":  # per-row step 1/L with L the largest eigenvalue of the block
        lip = torch.linalg.eigvalsh(gw)[:, -1]
        step = torch.where(lip > 0, 1.0 / lip.clamp(min=1e-300), torch.zeros_like(lip))[:, None]
    for _ in range(8):  # rounds; the outer loop refreshes the blocks after that
        if used >= budget:
            break
        if inner == "cd":
            qw = bw - torch.bmm(cw[:, None, :], gw)[:, 0, :]
            for _ in range(2):
                _cd_sweep(cw, qw, gw, dw, iw, alpha, positive)
            used += 2
        else:
            for _ in range(10):
                grad = torch.bmm(y[:, None, :], gw)[:, 0, :] - bw
                cn = _soft(y - step * grad, alpha * step, positive)
                restart = ((y - cn) * (cn - cw)).sum(1) > 0
                t = torch.where(restart, torch.ones_like(t), t)
                tn = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
                y = cn + ((t - 1) / tn)[:, None] * (cn - cw)
                cw, t = cn, tn
            used += 10
        c2 = _newton_on_block(cw, gw, bw, alpha, positive)
        moved = (c2 != cw).any(1)
        cw = c2
        qw = bw - torch.bmm(cw[:, None, :], gw)[:, 0, :]
        _, gap = duality_gap_gram(cw, qw, bw, xs, alpha, positive)
        done = gap <= tol * xs
        out[idx] = cw
        if bool(done.all()):
            break
        keep = ~done
        idx, cw, gw, bw, xs = idx[keep], cw[keep], gw[keep], bw[keep], xs[keep]
        dw, iw = dw[keep], iw[keep]
        if inner == "fista":
            step = step[keep]
        y = torch.where(moved[keep][:, None], cw, y[keep])
        t = torch.where(moved[keep], torch.ones_like(t[keep]), t[keep])
    return out, used


def lasso_gram(
    G: torch.Tensor,
    B: torch.Tensor,
    xsq: torch.Tensor,
    alpha: float,
    C0: torch.Tensor,
    *,
    inner: str = "cd",
    max_iter: int = 1000,
    tol: float = 1e-6,
    positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Working-set lasso solver, batched over samples; returns (codes (n, k), gaps (n,)).

    Outer loop: ``Q = B − C G`` with one matmul, each sample's duality gap, and samples with
    ``gap ≤ tol·||x||²`` leave the batch. Every other sample gets a block ``W`` of width
    ``m``: its support plus its worst KKT violators. The blocks ``G[W_i, W_i]`` (r, m, m)
    are gathered once and the restricted problems solved by ``inner`` ("cd": cyclic
    coordinate descent; "fista": FISTA with adaptive restart), each round finished by an
    exact Newton step on the support. ``max_iter`` bounds the inner sweeps/iterations.
    """
    n, k = B.shape
    out = C0.clone()
    gaps = torch.full((n,), float("inf"), dtype=B.dtype, device=B.device)
    rows = torch.arange(n, device=B.device)
    C, Bt, xs = out.clone(), B, xsq
    used, width = 0, 0
    while True:
        Q = Bt - C @ G
        _, gap = duality_gap_gram(C, Q, Bt, xs, alpha, positive)
        out[rows] = C
        gaps[rows] = gap
        done = gap <= tol * xs
        if bool(done.all()) or used >= max_iter:
            break
        keep = ~done
        rows, C, Q, Bt, xs = rows[keep], C[keep], Q[keep], Bt[keep], xs[keep]
        supp = C != 0
        n_supp = int(supp.sum(1).max())
        width = min(k, max(width, n_supp + 8, 2 * n_supp, 8))
        score = Q if positive else Q.abs()
        score = torch.where(supp, torch.full_like(score, float("inf")), score)
        W = torch.topk(score, width, dim=1).indices  # (r, m)
        gw = G[W[:, :, None], W[:, None, :]]  # (r, m, m)
        cw, spent = _solve_block(
            C.gather(1, W),
            gw,
            Bt.gather(1, W),
            xs,
            alpha,
            positive,
            inner,
            max_iter - used,
            0.5 * tol,
        )
        used += spent
        C = torch.zeros_like(C).scatter_(1, W, cw)
    return out, gaps
