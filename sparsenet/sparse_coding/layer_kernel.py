"""One compiled call per DeepSC layer and chunk of images: patches → codes → pooled features.

For every image of a chunk (numba ``prange``: images are split over numba's threads) and
every patch position of its grid, :func:`_layer` does what the torch path did in five
passes over memory, without ever holding the (images × positions × atoms) code tensor:

1. gathers the ``size × size`` patch from the channels-last map (the ``F.unfold`` layout,
   channel-major), normalises it (:func:`~.patches.normalize_patches`), whitens it and
   correlates it with the atoms: ``b = ((p − μ) W_zca) Dᵀ`` (with ``M = W_zca Dᵀ``
   precomputed when ``||x||²`` is not needed);
2. solves the lasso for that patch with one of two inner solvers:

   * ``"fista"``: today's DeepSC encoder, ``sparse_encode(method="fista", max_iter=T,
     tol=0)`` of :mod:`.lasso`, replayed per sample: blocks of the support plus the worst
     KKT violators, rounds of 10 FISTA steps (step 1/λ_max of the block, adaptive restart)
     and an active-set Newton step (:func:`.lasso_cpu._newton`). For ``T ≤ 10`` (DeepSC's
     default 5) that is one block of 8 or 16 atoms and 10 FISTA steps, and the codes equal
     the torch solver's to float32 rounding (``tests/sparse_coding/test_layer_kernel.py``).
     For ``T > 10`` the torch solver charged every sample the most iterations any block of
     its batch used; here each sample is charged its own (batch-independent codes).
   * ``"cd"``: the exact lasso, :func:`.lasso_cpu._solve_one` (coordinate descent with
     covariance updates, duality-gap stop at ``tol · ||x||²``), the kernel behind
     ``sparse_encode(method="cd")`` on CPU;

3. max-pools the (polarity-split) codes straight into the spatial-pyramid features and the
   local p×p map that feeds the next layer.

Two exact shortcuts: a patch equal to the previous position's patch reuses its codes, and
every constant patch (blank background: it normalises to the zero vector) reuses the codes
of the first one of its image. Both give bit-identical codes, so nothing approximates.

The largest eigenvalue of each block (FISTA's step) comes from a Householder
tridiagonalisation and Laguerre's iteration in float64 (:func:`_lmax`): LAPACK's
``eigvalsh`` through numba cost 15 µs per 16×16 block (one shared core), about as much as
the whole encoding of a patch is allowed to.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numba
import numpy as np

from .lasso import _GROW, _INNER_REL, _WIDTHS
from .lasso_cpu import _gap, _jit, _newton, _solve_one

__all__ = ["layer_kernel", "SOLVERS"]

SOLVERS = ("fista", "cd")
_WIDTHS_ARR = np.array(_WIDTHS, dtype=np.int64)
_FISTA_STEPS = 10  # FISTA iterations per round (lasso._solve_block)
_ROUNDS = 8  # rounds per block (lasso._solve_block)

# per-thread scratch of the solvers, allocated once per image (see _scratch)
_Scratch = namedtuple(
    "_Scratch", "q score W gw bw cw y cn grad before tri d e v p ident qw chol z everyone"
)


@_jit(nogil=True, fastmath=False)
def _lmax(blk: Any, m: int, a: Any, d: Any, e: Any, v: Any, p: Any) -> float:
    """Largest eigenvalue of the symmetric ``blk[:m, :m]``, in float64.

    ``m`` Lanczos steps reduce the block to a tridiagonal T (diagonal d, off-diagonal e)
    whose largest eigenvalue is the block's (the extreme Ritz value converges first; lost
    orthogonality only duplicates converged values); then Laguerre's iteration on
    det(T − λI) from the Gershgorin upper bound, which for real roots decreases
    monotonically to the largest one, cubically near it. Should Lanczos break down (an
    invariant subspace that may miss the top eigenvector), a Householder reduction takes
    over. ``a`` (≥ m, ≥ m) and ``d, e, v, p`` (≥ m) are scratch.
    """
    n = m
    if n == 1:
        return float(blk[0, 0])
    # Lanczos: v the current vector, p the previous one, a[0] the product
    w = a[0]
    norm = 0.0
    for i in range(n):  # a start vector unlikely to be orthogonal to any eigenvector
        v[i] = 1.0 + 0.61803398875 * ((i * 7) % n) / n
        norm += v[i] * v[i]
    norm = np.sqrt(norm)
    for i in range(n):
        v[i] /= norm
        p[i] = 0.0
    beta = 0.0
    broke = False
    for step in range(n):
        for i in range(n):
            w[i] = -beta * p[i]
        for j in range(n):  # w += A v (columns of a symmetric A: vectorises)
            vj = v[j]
            for i in range(n):
                w[i] += blk[j, i] * vj
        alpha = 0.0
        for i in range(n):
            alpha += w[i] * v[i]
        d[step] = alpha
        if step == n - 1:
            break
        beta = 0.0
        for i in range(n):
            w[i] -= alpha * v[i]
            beta += w[i] * w[i]
        beta = np.sqrt(beta)
        e[step] = beta
        if beta <= 1e-9 * abs(alpha) + 1e-300:
            broke = True
            break
        for i in range(n):
            p[i] = v[i]
            v[i] = w[i] / beta
    if broke:
        _householder(blk, n, a, d, e, v, p)
    return _laguerre_top(d, e, n)


@_jit(nogil=True, fastmath=False)
def _householder(blk: Any, n: int, a: Any, d: Any, e: Any, v: Any, p: Any) -> None:
    """Householder reduction of ``blk[:n, :n]`` to a tridiagonal (d, e)."""
    for i in range(n):
        for j in range(n):
            a[i, j] = blk[i, j]

    for k in range(n - 2):
        d[k] = a[k, k]
        alpha = 0.0
        for i in range(k + 1, n):
            alpha += a[i, k] * a[i, k]
        alpha = np.sqrt(alpha)
        if a[k + 1, k] > 0:
            alpha = -alpha
        e[k] = alpha
        v[k + 1] = a[k + 1, k] - alpha
        vn = v[k + 1] * v[k + 1]
        for i in range(k + 2, n):
            v[i] = a[i, k]
            vn += v[i] * v[i]
        if vn == 0.0:  # the column is already reduced
            e[k] = a[k + 1, k]
            continue
        beta = 2.0 / vn
        for i in range(k + 1, n):
            p[i] = 0.0
        for j in range(k + 1, n):  # p = β A v on the trailing block (A symmetric)
            bv = beta * v[j]
            for i in range(k + 1, n):
                p[i] += a[j, i] * bv
        vp = 0.0
        for i in range(k + 1, n):
            vp += v[i] * p[i]
        half = 0.5 * beta * vp
        for i in range(k + 1, n):
            p[i] -= half * v[i]
        for i in range(k + 1, n):  # A ← A − v pᵀ − p vᵀ
            vi = v[i]
            pi = p[i]
            for j in range(k + 1, n):
                a[i, j] -= vi * p[j] + pi * v[j]
    d[n - 2] = a[n - 2, n - 2]
    e[n - 2] = a[n - 1, n - 2]
    d[n - 1] = a[n - 1, n - 1]


@_jit(nogil=True, fastmath=False)
def _laguerre_top(d: Any, e: Any, n: int) -> float:
    """Largest eigenvalue of the tridiagonal (d[:n], e[:n-1]) by Laguerre's iteration."""
    x = -np.inf
    for i in range(n):
        rad = (abs(e[i - 1]) if i > 0 else 0.0) + (abs(e[i]) if i < n - 1 else 0.0)
        x = max(x, d[i] + rad)
    scale = max(abs(x), 1e-300)
    for _ in range(100):
        # det(T − xI) and its first two derivatives by the three-term recurrence
        f0, f1 = 1.0, d[0] - x
        g0, g1 = 0.0, -1.0
        h0, h1 = 0.0, 0.0
        for i in range(1, n):
            ee = e[i - 1] * e[i - 1]
            dx = d[i] - x
            f2 = dx * f1 - ee * f0
            g2 = dx * g1 - f1 - ee * g0
            h2 = dx * h1 - 2.0 * g1 - ee * h0
            f0, f1, g0, g1, h0, h1 = f1, f2, g1, g2, h1, h2
        if f1 == 0.0 or (f1 > 0) != (n % 2 == 0):
            break  # at the root, or past it by rounding (above every root sign = (−1)ⁿ)
        gg = g1 / f1
        hh = gg * gg - h1 / f1
        disc = (n - 1) * (n * hh - gg * gg)
        # above every root gg = Σ 1/(x − λ_i) > 0: the + root moves x down, to λ_max
        den = gg + np.sqrt(disc) if disc > 0 else gg
        if not den > 0.0:
            break
        step = n / den
        x_new = x - step
        if not x_new < x:  # rounding: converged
            break
        x = x_new
        if step <= 1e-12 * scale:
            break
    return x


@_jit(nogil=True, fastmath=False, inline="always")
def _soft(z: float, thresh: float, positive: bool) -> float:
    if z > thresh:
        return z - thresh
    if z < -thresh and not positive:
        return z + thresh
    return 0.0


@_jit(nogil=True, fastmath=False)
def _block_gap(gw: Any, bw: Any, cw: Any, m: int, xsq: float, alpha: float, positive: bool,
               qw: Any, ident: Any) -> float:
    """Duality gap of the problem restricted to the block (``qw`` scratch, float64)."""
    for a in range(m):
        acc = float(bw[a])
        for e in range(m):
            acc -= float(cw[e]) * float(gw[e, a])
        qw[a] = acc
    return _gap(cw, qw, bw, xsq, alpha, positive, ident, m)


@_jit(nogil=True, fastmath=False)
def _fista_block(gw: Any, bw: Any, cw: Any, m: int, alpha: float, positive: bool, budget: int,
                 inner_tol: float, xsq: float, need_gap: bool, max_support: int, s: Any) -> int:
    """``lasso._solve_block`` (inner="fista") for one sample; returns iterations used.

    ``gw`` (m, m) block Gram, ``bw`` (m,) correlations, ``cw`` (m,) codes (in place).
    """
    lip = _lmax(gw, m, s.tri, s.d, s.e, s.v, s.p)
    step = 1.0 / lip if lip > 0 else 0.0
    thresh = alpha * step
    y, cn, before, grad = s.y, s.cn, s.before, s.grad
    for a in range(m):
        y[a] = cw[a]
    t = 1.0
    used = 0
    for _ in range(_ROUNDS):
        if used >= budget:
            break
        for a in range(m):
            before[a] = cw[a] != 0
        for _ in range(_FISTA_STEPS):
            for a in range(m):  # grad = y G − b (G symmetric), as axpys that vectorise
                grad[a] = -bw[a]
            for e in range(m):
                ye = y[e]
                if ye != 0:
                    for a in range(m):
                        grad[a] += ye * gw[e, a]
            for a in range(m):
                cn[a] = _soft(float(y[a]) - step * float(grad[a]), thresh, positive)
            dot = 0.0
            for a in range(m):
                dot += (float(y[a]) - float(cn[a])) * (float(cn[a]) - float(cw[a]))
            if dot > 0:  # adaptive restart
                t = 1.0
            tn = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            mom = (t - 1.0) / tn
            for a in range(m):
                y[a] = cn[a] + mom * (float(cn[a]) - float(cw[a]))
                cw[a] = cn[a]
            t = tn
        used += _FISTA_STEPS
        stable = True
        n_supp = 0
        for a in range(m):
            if (cw[a] != 0) != before[a]:
                stable = False
            if cw[a] != 0:
                n_supp += 1
        moved = False
        if stable and 0 < n_supp <= max_support:
            moved = _newton(gw, bw, s.ident, cw, s.qw, alpha, m, s.chol, s.z) != 0
        if need_gap and _block_gap(gw, bw, cw, m, xsq, alpha, positive, s.qw,
                                   s.ident) <= inner_tol:
            break
        if moved:
            for a in range(m):
                y[a] = cw[a]
            t = 1.0
    return used


@_jit(nogil=True, fastmath=False)
def _fista_one(g: Any, b: Any, xsq: float, c: Any, alpha: float, tol: float, max_iter: int,
               positive: bool, need_gap: bool, max_support: int, s: Any) -> None:
    """``lasso.lasso_gram(inner="fista")`` from zero codes for one sample, in place on ``c``.

    Without ``need_gap`` (``tol == 0`` and ``max_iter ≤ 10``) the gaps decide nothing but
    the first test, which for zero codes is ``max |b| ≤ α``; ``xsq`` is then unused.
    """
    k = b.shape[0]
    q, score, W, gw, bw, cw = s.q, s.score, s.W, s.gw, s.bw, s.cw
    for j in range(k):
        c[j] = 0.0
    used = 0
    first = True
    while used < max_iter:  # (the torch solver's later tests cannot change the codes)
        for h in range(k):  # q = b − c G
            q[h] = float(b[h])
        for j in range(k):
            if c[j] != 0:
                cj = float(c[j])
                for h in range(k):
                    q[h] -= cj * float(g[j, h])
        if need_gap:
            gap = _gap(c, q, b, xsq, alpha, positive, s.everyone, k)
            if gap <= tol * xsq:
                break
        else:
            gap = 0.0
            if first:
                worst = 0.0
                for h in range(k):
                    v = q[h] if positive else abs(q[h])
                    if v > worst:
                        worst = v
                if worst <= alpha:
                    break
        first = False
        n_supp = 0
        n_viol = 0
        for h in range(k):
            v = q[h] if positive else abs(q[h])
            if c[h] != 0:
                n_supp += 1
                score[h] = np.inf
            else:
                score[h] = v
                if v > alpha:
                    n_viol += 1
        need = max(1, n_supp + min(n_viol, _GROW))
        width = k
        for w_ in _WIDTHS_ARR:
            if w_ >= need:
                width = w_
                break
        width = min(k, width)
        top = 0  # the top `width` scores, best first (torch.topk), by insertion
        for h in range(k):
            v = score[h]
            if top == width and v <= score[W[top - 1]]:
                continue
            a = top if top < width else width - 1
            while a > 0 and score[W[a - 1]] < v:
                W[a] = W[a - 1]
                a -= 1
            W[a] = h
            if top < width:
                top += 1
        for a in range(width):
            ja = W[a]
            cw[a] = c[ja]
            bw[a] = b[ja]
            for e in range(width):
                gw[a, e] = g[ja, W[e]]
        inner_tol = max(0.5 * tol * xsq, _INNER_REL * gap)
        used += _fista_block(gw, bw, cw, width, alpha, positive, max_iter - used, inner_tol,
                             xsq, need_gap, max_support, s)
        for h in range(k):
            c[h] = 0.0
        for a in range(width):
            c[W[a]] = cw[a]



@_jit(nogil=True, fastmath=False)
def _scratch(k: int, dtype: Any) -> Any:
    """Scratch for :func:`_fista_one` / :func:`_solve_one` with ``k`` atoms."""
    return _Scratch(
        np.empty(k, dtype=np.float64),  # q
        np.empty(k, dtype=np.float64),  # score
        np.empty(k, dtype=np.int64),  # W
        np.empty((k, k), dtype=dtype),  # gw (also gss of _solve_one)
        np.empty(k, dtype=dtype),  # bw
        np.empty(k, dtype=dtype),  # cw (also cs of _solve_one)
        np.empty(k, dtype=dtype),  # y
        np.empty(k, dtype=dtype),  # cn
        np.empty(k, dtype=dtype),  # grad
        np.empty(k, dtype=np.bool_),  # before
        np.empty((k, k), dtype=np.float64),  # tri
        np.empty(k, dtype=np.float64),  # d
        np.empty(k, dtype=np.float64),  # e
        np.empty(k, dtype=np.float64),  # v
        np.empty(k, dtype=np.float64),  # p
        np.arange(k),  # ident
        np.empty(k, dtype=np.float64),  # qw (also qs of _solve_one)
        np.empty((k, k), dtype=np.float64),  # chol
        np.empty(k, dtype=np.float64),  # z
        np.arange(k),  # everyone
    )


@_jit(nogil=True, parallel=True, fastmath=False)
def _layer(maps: Any, size: int, stride: int, eps: float, mode: int, mean: Any, wz: Any,
           dt: Any, g: Any, alpha: float, cd: bool, max_iter: int, tol: float,
           need_xsq: bool, max_support: int, polarity: bool, cells: Any, pool_size: int,
           pool_stride: int, feats: Any, pooled: Any, want_feats: bool,
           want_pooled: bool) -> None:
    """Encode and pool every patch of every image of ``maps`` (B, h, w, C); see the module.

    ``mode`` 0: no whitening, ``dt`` = Dᵀ (P, K); 1: whitened, ``wz`` = W_zca Dᵀ (P, K)
    (``||x||²`` not computed); 2: whitened, ``wz`` = W_zca (P, P) and ``dt`` = Dᵀ.
    ``cells`` (n_cells, 4): the pyramid's cells [row0, row1, col0, col1) in output order.
    Writes ``feats`` (B, n_cells · K') and ``pooled`` (B, ph, pw, K'), K' = 2K with
    ``polarity`` (positive parts, then negative parts), else K.
    """
    nb, h, w, nch = maps.shape
    k = g.shape[0]
    kp = 2 * k if polarity else k
    n_pix = size * size
    dim = nch * n_pix
    gh = (h - size) // stride + 1
    gw_ = (w - size) // stride + 1
    ph = pooled.shape[1]
    pw = pooled.shape[2]
    n_cells = cells.shape[0]
    diag = np.empty(k, dtype=g.dtype)
    for j in range(k):
        diag[j] = g[j, j]
    for n in numba.prange(nb):
        s = _scratch(k, g.dtype)
        raw = np.empty(dim, dtype=np.float32)
        prev = np.empty(dim, dtype=np.float32)
        x = np.empty(dim, dtype=np.float32)
        xw = np.empty(dim, dtype=np.float32)
        b = np.empty(k, dtype=g.dtype)
        code = np.empty(k, dtype=g.dtype)
        blank = np.empty(k, dtype=g.dtype)
        have_prev = False
        have_blank = False
        if want_feats:
            for f in range(feats.shape[1]):
                feats[n, f] = -np.inf
        if want_pooled:
            for oi in range(ph):
                for oj in range(pw):
                    for f in range(kp):
                        pooled[n, oi, oj, f] = -np.inf
        for i in range(gh):
            for j in range(gw_):
                idx = 0
                for ch in range(nch):  # the F.unfold layout: (channel, row, column)
                    for di in range(size):
                        for dj in range(size):
                            raw[idx] = maps[n, i * stride + di, j * stride + dj, ch]
                            idx += 1
                same = have_prev
                if have_prev:
                    for a in range(dim):
                        if raw[a] != prev[a]:
                            same = False
                            break
                if not same:
                    constant = True
                    for a in range(1, dim):
                        if raw[a] != raw[0]:
                            constant = False
                            break
                    if constant and have_blank:
                        for h_ in range(k):
                            code[h_] = blank[h_]
                    else:
                        _encode_patch(raw, x, xw, b, code, s, diag, eps, mode, mean, wz, dt,
                                      g, alpha, cd, max_iter, tol, need_xsq, max_support)
                        if constant:
                            for h_ in range(k):
                                blank[h_] = code[h_]
                            have_blank = True
                    for a in range(dim):
                        prev[a] = raw[a]
                    have_prev = True
                if want_feats:
                    for cell in range(n_cells):
                        if cells[cell, 0] <= i < cells[cell, 1] and \
                                cells[cell, 2] <= j < cells[cell, 3]:
                            _pool_into(feats[n], cell * kp, code, k, polarity)
                if want_pooled:
                    i0 = max(0, (i - pool_size + pool_stride) // pool_stride)
                    j0 = max(0, (j - pool_size + pool_stride) // pool_stride)
                    for oi in range(i0, min(ph, i // pool_stride + 1)):
                        for oj in range(j0, min(pw, j // pool_stride + 1)):
                            _pool_into(pooled[n, oi, oj], 0, code, k, polarity)


@_jit(nogil=True, fastmath=False, inline="always")
def _pool_into(out: Any, base: int, code: Any, k: int, polarity: bool) -> None:
    """``out[base:base + K'] = max(out, split_polarity(code))``."""
    if polarity:
        for h in range(k):
            v = float(code[h])
            pos = v if v > 0 else 0.0
            neg = -v if v < 0 else 0.0
            if pos > out[base + h]:
                out[base + h] = pos
            if neg > out[base + k + h]:
                out[base + k + h] = neg
    else:
        for h in range(k):
            if code[h] > out[base + h]:
                out[base + h] = code[h]


@_jit(nogil=True, fastmath=False)
def _encode_patch(raw: Any, x: Any, xw: Any, b: Any, code: Any, s: Any, diag: Any, eps: float,
                  mode: int, mean: Any, wz: Any, dt: Any, g: Any, alpha: float, cd: bool,
                  max_iter: int, tol: float, need_xsq: bool, max_support: int) -> None:
    """Normalise, whiten and correlate one patch, then solve its lasso into ``code``."""
    dim = raw.shape[0]
    k = b.shape[0]
    tot = 0.0
    for a in range(dim):
        tot += raw[a]
    mu = tot / dim
    var = 0.0
    for a in range(dim):
        dv = raw[a] - mu
        var += dv * dv
    inv = 1.0 / np.sqrt(var / dim + eps)
    for a in range(dim):
        x[a] = (raw[a] - mu) * inv
    for h in range(k):
        b[h] = 0.0
    xsq = 0.0
    if mode == 0:  # b = x Dᵀ, loops ordered so that the inner one vectorises over atoms
        for a in range(dim):
            xa = x[a]
            xsq += float(xa) * float(xa)
            for h in range(k):
                b[h] += xa * dt[a, h]
    elif mode == 1:  # b = (x − μ) (W Dᵀ)
        for a in range(dim):
            xa = x[a] - mean[a]
            for h in range(k):
                b[h] += xa * wz[a, h]
    else:  # xw = (x − μ) W, b = xw Dᵀ
        for e in range(dim):
            xw[e] = 0.0
        for a in range(dim):
            xa = x[a] - mean[a]
            for e in range(dim):
                xw[e] += xa * wz[a, e]
        for a in range(dim):
            xa = xw[a]
            xsq += float(xa) * float(xa)
            for h in range(k):
                b[h] += xa * dt[a, h]
    if cd:
        for h in range(k):
            code[h] = 0.0
        _solve_one(g, diag, b, xsq, code, alpha, tol, max_iter, False, s.q, s.W, s.everyone,
                   s.gw, s.cw, s.qw, s.chol, s.z)
    else:
        _fista_one(g, b, xsq, code, alpha, tol, max_iter, False, need_xsq, max_support, s)


def pyramid_cells(gh: int, gw: int, levels: Any) -> np.ndarray:
    """The cells of :func:`~.pooling.pyramid_max_pool` (adaptive-pooling bins), in its
    output order: (n_cells, 4) int64 rows ``[row0, row1, col0, col1)``."""
    rows = []
    for level in levels:
        for ci in range(level):
            for cj in range(level):
                rows.append((
                    (ci * gh) // level, -((-(ci + 1) * gh) // level),
                    (cj * gw) // level, -((-(cj + 1) * gw) // level),
                ))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def layer_kernel(
    maps: np.ndarray,
    *,
    size: int,
    stride: int,
    eps: float,
    atoms: np.ndarray,
    alpha: float,
    whiten_mean: np.ndarray | None = None,
    whitening: np.ndarray | None = None,
    solver: str = "fista",
    max_iter: int = 5,
    tol: float = 0.0,
    polarity: bool = True,
    levels: Any = (1, 2, 4),
    pool: tuple[int, int] | None = None,
    want_feats: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pyramid features and locally pooled codes of one DeepSC layer, in one compiled call.

    Parameters
    ----------
    maps : ndarray (B, h, w, C), float32
        The layer's input, channels last.
    size, stride, eps : patch side, patch stride, absolute normalisation regulariser
    atoms : ndarray (K, P), P = C · size², the dictionary (rows are atoms)
    alpha : lasso penalty
    whiten_mean, whitening : ZCA mean (P,) and matrix (P, P), or None (no whitening)
    solver : ``"fista"`` (today's encoder, ``max_iter`` FISTA iterations, ``tol`` 0) or
        ``"cd"`` (exact lasso to a duality gap ≤ ``tol · ||x||²``, at most ``max_iter``
        sweeps)
    polarity : split codes into positive and negative parts before pooling (K' = 2K)
    levels : spatial-pyramid levels (each ≤ the grid's sides)
    pool : (p, s) local max pooling, or None for no pooled map
    want_feats : compute the pyramid features

    Returns
    -------
    feats : ndarray (B, n_cells · K') float32, or None
    pooled : ndarray (B, ph, pw, K') float32, or None
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {SOLVERS}")
    x = np.ascontiguousarray(maps, dtype=np.float32)
    nb, h, w, _ = x.shape
    gh, gw = (h - size) // stride + 1, (w - size) // stride + 1
    d = np.asarray(atoms, dtype=np.float64)
    k, dim = d.shape
    g = np.ascontiguousarray(d @ d.T, dtype=np.float32)
    dt = np.ascontiguousarray(d.T, dtype=np.float32)
    need_xsq = solver == "cd" or max_iter > _FISTA_STEPS or tol > 0
    dummy = np.zeros((1, 1), dtype=np.float32)
    if whitening is None:
        mode, mean, wz = 0, np.zeros(dim, dtype=np.float32), dummy
    elif need_xsq:
        mode, mean, wz = 2, np.asarray(whiten_mean, dtype=np.float32), np.ascontiguousarray(
            whitening, dtype=np.float32)
    else:
        mode, mean = 1, np.asarray(whiten_mean, dtype=np.float32)
        wz = np.ascontiguousarray(np.asarray(whitening, dtype=np.float64) @ d.T, dtype=np.float32)
    kp = 2 * k if polarity else k
    cells = pyramid_cells(gh, gw, levels) if want_feats else np.zeros((0, 4), dtype=np.int64)
    feats = np.empty((nb, len(cells) * kp), dtype=np.float32)
    if pool is None:
        p_size, p_stride, ph, pw = 1, 1, 0, 0
    else:
        p_size, p_stride = pool
        ph, pw = (gh - p_size) // p_stride + 1, (gw - p_size) // p_stride + 1
    pooled = np.empty((nb, ph, pw, kp), dtype=np.float32)
    if nb:
        _layer(x, int(size), int(stride), float(eps), mode, mean, wz, dt, g, float(alpha),
               solver == "cd", int(max_iter), float(tol), need_xsq, dim, bool(polarity),
               cells, int(p_size), int(p_stride), feats, pooled, bool(want_feats),
               pool is not None)
    return (feats if want_feats else None), (pooled if pool is not None else None)
