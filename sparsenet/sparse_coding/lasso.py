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

__all__ = ["lasso_objective_gram", "duality_gap_gram", "fista_gram", "cd_gram"]

_GAP_EVERY = 10  # FISTA iterations between duality-gap checks


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


def _support_newton(
    C: torch.Tensor, G: torch.Tensor, B: torch.Tensor, xsq: torch.Tensor, alpha: float,
    positive: bool,
) -> torch.Tensor:
    """Solve the lasso exactly on each row's current support and sign pattern.

    Once FISTA has found the right support ``S`` and signs ``s``, the optimum there is
    ``c_S = G_SS⁻¹ (b_S − α s)``; one batched Cholesky solve jumps to it. The candidate is
    kept only where it lowers the objective, so the step can never hurt.
    """
    n, k = C.shape
    supp = C != 0
    sizes = supp.sum(1)
    m = int(sizes.max()) if n else 0
    if m == 0:
        return C
    order = torch.argsort((~supp).to(torch.int8), dim=1, stable=True)[:, :m]  # (n, m)
    valid = torch.arange(m, device=C.device)[None, :] < sizes[:, None]  # (n, m)
    gss = G[order[:, :, None], order[:, None, :]]  # (n, m, m)
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(m, dtype=C.dtype, device=C.device).expand(n, m, m)
    gss = torch.where(pair, gss, eye)
    signs = torch.sign(C.gather(1, order))
    rhs = torch.where(valid, B.gather(1, order) - alpha * signs, torch.zeros_like(signs))
    chol, info = torch.linalg.cholesky_ex(gss)
    z = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    z = torch.where(valid, z, torch.zeros_like(z))
    if positive:
        z = z.clamp(min=0)
    cand = torch.zeros_like(C).scatter_(1, order, z)
    ok = (info == 0) & torch.isfinite(z).all(1)
    better = lasso_objective_gram(cand, G, B, xsq, alpha) < lasso_objective_gram(
        C, G, B, xsq, alpha
    )
    keep = (ok & better)[:, None]
    return torch.where(keep, cand, C)


def fista_gram(
    G: torch.Tensor,
    B: torch.Tensor,
    xsq: torch.Tensor,
    alpha: float,
    C0: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FISTA with adaptive restart and a support-Newton polish; returns (codes, gaps).

    Every ``_GAP_EVERY`` iterations the duality gap of each sample is checked, rows that
    meet ``gap ≤ tol·||x||²`` leave the batch, and the others get one :func:`_support_newton`
    step (which usually finishes them once the support is identified).
    """
    n = B.shape[0]
    out = C0.clone()
    gaps = torch.full((n,), float("inf"), dtype=B.dtype, device=B.device)
    lip = float(torch.linalg.eigvalsh(G)[-1]) if G.numel() else 1.0
    if lip <= 0:  # all atoms are zero: c = 0 is optimal
        out.zero_()
        return out, torch.zeros_like(gaps)
    step = 1.0 / lip
    rows = torch.arange(n, device=B.device)
    C, Bt, xs = out.clone(), B, xsq
    Y = C.clone()
    t = torch.ones(n, dtype=B.dtype, device=B.device)
    for it in range(max_iter + 1):
        if it % _GAP_EVERY == 0 or it == max_iter:
            Q = Bt - C @ G
            _, gap = duality_gap_gram(C, Q, Bt, xs, alpha, positive)
            done = gap <= tol * xs
            if it < max_iter and not bool(done.all()):
                C2 = _support_newton(C, G, Bt, xs, alpha, positive)
                moved = (C2 != C).any(1)
                if bool(moved.any()):
                    C = C2
                    Q = Bt - C @ G
                    _, gap = duality_gap_gram(C, Q, Bt, xs, alpha, positive)
                    done = gap <= tol * xs
                    Y = torch.where(moved[:, None], C, Y)
                    t = torch.where(moved, torch.ones_like(t), t)
            out[rows] = C
            gaps[rows] = gap
            if bool(done.all()) or it == max_iter:
                break
            if bool(done.any()):
                keep = ~done
                rows, C, Y, t, Bt, xs = rows[keep], C[keep], Y[keep], t[keep], Bt[keep], xs[keep]
        grad = Y @ G - Bt
        Cn = _soft(Y - step * grad, alpha * step, positive)
        # gradient-based adaptive restart (O'Donoghue & Candès): momentum off where it hurts
        restart = ((Y - Cn) * (Cn - C)).sum(1) > 0
        t = torch.where(restart, torch.ones_like(t), t)
        tn = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
        Y = Cn + ((t - 1) / tn)[:, None] * (Cn - C)
        C, t = Cn, tn
    return out, gaps


def cd_gram(
    G: torch.Tensor,
    B: torch.Tensor,
    xsq: torch.Tensor,
    alpha: float,
    C0: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Working-set cyclic coordinate descent, batched over samples; returns (codes, gaps).

    Outer loop: compute ``Q = B − C G`` with one matmul, check each sample's duality gap,
    and give each unfinished sample a working set of width ``m`` = its support plus its
    worst KKT violators. Inner loop: cyclic coordinate descent over the working sets, one
    coordinate position at a time for all samples, using the gathered Gram blocks
    ``G[W_i, W_i]`` (n, m, m). ``max_iter`` bounds the total number of sweeps.
    """
    n, k = B.shape
    out = C0.clone()
    gaps = torch.full((n,), float("inf"), dtype=B.dtype, device=B.device)
    diag = G.diagonal().clone()
    inv_diag = torch.where(diag > 0, 1.0 / diag.clamp(min=1e-300), torch.zeros_like(diag))
    rows = torch.arange(n, device=B.device)
    C, Bt, xs = out.clone(), B, xsq
    sweeps = 0
    width = min(k, 16)
    while True:
        Q = Bt - C @ G
        _, gap = duality_gap_gram(C, Q, Bt, xs, alpha, positive)
        out[rows] = C
        gaps[rows] = gap
        done = gap <= tol * xs
        if bool(done.all()) or sweeps >= max_iter or k == 0:
            break
        keep = ~done
        rows, C, Q, Bt, xs = rows[keep], C[keep], Q[keep], Bt[keep], xs[keep]
        supp = C != 0
        width = min(k, max(width, 2 * int(supp.sum(1).max())))
        score = Q if positive else Q.abs()
        score = torch.where(supp, torch.full_like(score, float("inf")), score)
        W = torch.topk(score, width, dim=1).indices  # (r, m)
        gw = G[W[:, :, None], W[:, None, :]]  # (r, m, m)
        cw, qw, bw = C.gather(1, W), Q.gather(1, W), Bt.gather(1, W)
        dw, iw = diag[W], inv_diag[W]
        inner_tol = 0.25 * tol * xs
        for sweep in range(max_iter - sweeps):
            for j in range(width):
                c_old = cw[:, j]
                z = qw[:, j] + dw[:, j] * c_old
                c_new = _soft(z, alpha, positive) * iw[:, j]
                delta = c_new - c_old
                cw[:, j] = c_new
                qw -= delta[:, None] * gw[:, j, :]
            sweeps += 1
            if sweep % 4 == 3:
                _, sub_gap = duality_gap_gram(cw, qw, bw, xs, alpha, positive)
                if bool((sub_gap <= inner_tol).all()):
                    break
        C = torch.zeros_like(C).scatter_(1, W, cw)
        width = min(k, 2 * width)
    return out, gaps
