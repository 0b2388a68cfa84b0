"""Per-sample coordinate-descent lasso on CPU, compiled with numba.

Solves, for every row ``b`` of ``B = X Dᵀ`` (one sample), the scikit-learn objective

    P(c) = ½ ||x − c D||² + α ||c||₁        (optionally with c ≥ 0)

in its Gram form (``G = D Dᵀ``, ``xsq = ||x||²``), keeping the correlations of the residual
with the atoms, ``q = b − G c``, up to date ("covariance updates"): changing ``c_j`` by δ
costs one row of G, ``q −= δ G[j]``, and coordinates that stay at zero cost O(1).

Per sample:

1. if the warm start already has gap ≤ ``tol · xsq``, return it untouched;
2. a few Gauss-Southwell steps (the best single-coordinate update first), so that the first
   cyclic sweep does not activate every atom correlated with the raw sample;
3. a full cyclic sweep over all atoms (this is where atoms enter the support);
4. the exact duality gap from ``q`` (O(k)); stop when it is ≤ ``tol · xsq``;
5. sweeps over the support only, on a gathered |S|×|S| Gram block with ``q`` kept on the
   support (O(|S|²) a sweep), every third one followed by an active-set Newton step, until
   the gap of the restricted problem is below max(½ target, 0.1 × the last full gap); then
   ``q`` is rebuilt exactly from the codes and the loop returns to 3.

The gap is the one of :func:`sparsenet.sparse_coding.duality_gap` (dual point: the residual
scaled into ``|⟨d_k, θ⟩| ≤ α``), so ``tol`` means exactly what it means for the torch
solvers. Samples are independent and split over numba's threads (``prange``).

Hand-written rather than calling a library: scikit-learn's ``sparse_encode`` fits one
``Lasso`` per sample (0.2–0.3 ms a sample on 8×8 patches, where this kernel needs about
20 µs of CPU) and its Cython CD updates the full residual (n_features) at every coordinate;
the batched torch solvers in :mod:`.lasso` pay a tensor-op overhead per step that a compiled
per-sample loop does not. ``benchmarks/bench_sparse_coding.py`` measures all three.

numba is imported only when this module is (the first CPU ``method="cd"`` call), and the
compiled kernels are cached on disk (``cache=True``) where a writable cache location exists;
on a read-only install without one they are compiled once per process instead.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["lasso_cd_cpu"]


def _jit(**options: Any) -> Any:
    def wrap(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # numba found no writable cache directory (read-only install)
            return numba.njit(cache=False, **options)(fn)

    return wrap


@_jit(nogil=True, fastmath=False)
def _gap(c: Any, q: Any, b: Any, xsq: float, alpha: float, positive: bool, idx: Any,
         m: int) -> float:
    """Duality gap from the entries ``idx[:m]`` (must contain the support of c) of c, q, b.

    With ``idx`` = all atoms this is the exact gap; with the support only it is the gap of the
    problem restricted to the support.
    """
    cb = 0.0
    cq = 0.0
    l1 = 0.0
    worst = 0.0
    for a in range(m):
        j = idx[a]
        cj = float(c[j])
        cb += cj * b[j]
        cq += cj * q[j]
        l1 += abs(cj)
        v = float(q[j]) if positive else abs(float(q[j]))
        if v > worst:
            worst = v
    rsq = xsq - cb - cq
    if rsq < 0.0:
        rsq = 0.0
    primal = 0.5 * rsq + alpha * l1
    scale = alpha / worst if worst > alpha else 1.0
    dual = scale * (xsq - cb) - 0.5 * scale * scale * rsq
    g = primal - dual
    return g if g > 0.0 else 0.0


@_jit(nogil=True, fastmath=False)
def _rebuild_q(g: Any, b: Any, c: Any, q: Any, supp: Any, m: int) -> None:
    """``q = b − G c`` from scratch, over the support ``supp[:m]`` of c."""
    k = b.shape[0]
    for h in range(k):
        q[h] = b[h]
    for a in range(m):
        j = supp[a]
        cj = c[j]
        for h in range(k):
            q[h] -= cj * g[j, h]


_NEWTON_EVERY = 3  # support-only CD sweeps between two Newton steps
_GREEDY_STEPS = 4  # Gauss-Southwell steps before the first cyclic sweep
# no Newton step on supports wider than this: its O(|T|³) Cholesky would cost as much as
# hundreds of support sweeps
_NEWTON_MAX = 64


@_jit(nogil=True, fastmath=False)
def _newton(gss: Any, b: Any, supp: Any, cs: Any, qs: Any, alpha: float, m: int, chol: Any,
            z: Any) -> int:
    """Active-set Newton step on the non-zeros of ``cs`` (codes on the block ``supp[:m]``).

    With the support T and the signs s of c_T fixed, the objective is the quadratic
    ``½ cGc − c·b + α s·c`` whose minimiser is ``z = G_TT⁻¹ (b_T − α s)``. Step from c_T
    towards z, stopping where the first coefficient reaches zero (it leaves T): the
    objective decreases along the whole step. Coordinate descent alone crawls when atoms
    are strongly correlated; this finishes such samples in a few steps. Updates cs and
    qs (= b − G c on the block); returns 0 (nothing changed) if T is empty or G_TT singular,
    1 after a full step (c_T = z, the optimum for that support and those signs), 2 after a
    partial one (a coefficient left T).
    ``chol`` (k, k) and ``z`` (k,) are scratch.
    """
    t = 0
    for a in range(m):
        if cs[a] != 0.0:
            t += 1
    if t == 0 or t > _NEWTON_MAX:
        return 0
    pos = np.empty(t, dtype=np.int64)
    t = 0
    for a in range(m):
        if cs[a] != 0.0:
            pos[t] = a
            t += 1
    # Cholesky G_TT = L Lᵀ (lower triangle of chol), in float64
    for r in range(t):
        for s_ in range(r + 1):
            acc = float(gss[pos[r], pos[s_]])
            for u in range(s_):
                acc -= chol[r, u] * chol[s_, u]
            if r == s_:
                if acc <= 1e-10 * float(gss[pos[r], pos[r]]):
                    return 0  # (numerically) singular: a support wider than the rank
                chol[r, r] = np.sqrt(acc)
            else:
                chol[r, s_] = acc / chol[s_, s_]
    # solve L Lᵀ z = b_T − α s
    for r in range(t):
        a = pos[r]
        sgn = 1.0 if cs[a] > 0 else -1.0
        acc = float(b[supp[a]]) - alpha * sgn
        for u in range(r):
            acc -= chol[r, u] * z[u]
        z[r] = acc / chol[r, r]
    for r in range(t - 1, -1, -1):
        acc = z[r]
        for u in range(r + 1, t):
            acc -= chol[u, r] * z[u]
        z[r] = acc / chol[r, r]
    # step towards z until the first sign change
    step = 1.0
    for r in range(t):
        ca = float(cs[pos[r]])
        if z[r] * ca <= 0.0:
            frac = ca / (ca - z[r])
            if frac < step:
                step = frac
    for r in range(t):
        a = pos[r]
        ca = float(cs[a])
        new = ca + step * (z[r] - ca)
        if z[r] * ca <= 0.0 and ca / (ca - z[r]) <= step:
            new = 0.0
        cs[a] = new
    for a in range(m):  # qs = b − G c on the block, exactly
        acc = float(b[supp[a]])
        for r in range(t):
            acc -= float(gss[a, pos[r]]) * cs[pos[r]]
        qs[a] = acc
    return 1 if step >= 1.0 else 2


@_jit(nogil=True, fastmath=False, inline="always")
def _coordinate(z: float, d: float, alpha: float, positive: bool) -> float:
    """The exact minimiser of ½ d t² − z t + α|t| (t ≥ 0 if ``positive``): one CD update."""
    if z > alpha:
        return (z - alpha) / d
    if z < -alpha and not positive:
        return (z + alpha) / d
    return 0.0


@_jit(nogil=True, fastmath=False)
def _greedy(g: Any, diag: Any, c: Any, q: Any, alpha: float, positive: bool, steps: int) -> None:
    """Gauss-Southwell coordinate steps: each updates the coordinate whose exact update moves
    the objective most (largest ``d_j Δ_j²``). From a cold start, cyclic sweeps activate
    every atom correlated with the residual at its turn (about three times the final support
    on 8×8 patches); taking the best atom first explains the sample with fewer."""
    k = q.shape[0]
    for _ in range(steps):
        best = 0.0
        jb = -1
        nb = 0.0
        for j in range(k):
            dj = diag[j]
            if dj <= 0.0:
                continue
            cj = c[j]
            new = _coordinate(q[j] + dj * cj, dj, alpha, positive)
            score = dj * (new - cj) * (new - cj)
            if score > best:
                best = score
                jb = j
                nb = new
        if jb < 0:
            return
        old = c[jb]
        c[jb] = nb
        delta = c[jb] - old  # in the codes' precision
        for h in range(k):
            q[h] -= delta * g[jb, h]


@_jit(nogil=True, fastmath=False)
def _solve_one(g: Any, diag: Any, b: Any, xsq: float, c: Any, alpha: float, tol: float,
               max_iter: int, positive: bool, q: Any, supp: Any, everyone: Any, gss: Any,
               cs: Any, qs: Any, chol: Any, z_: Any) -> float:
    """Solve one sample in place on ``c`` (k,); returns its duality gap at exit.

    ``q``, ``supp``, ``everyone`` (= arange(k)), ``gss``, ``chol`` (k, k), ``cs``, ``qs``,
    ``z_`` (k,) are scratch.
    """
    k = b.shape[0]
    target = tol * xsq
    m = 0
    for j in range(k):
        if c[j] != 0.0:
            supp[m] = j
            m += 1
    _rebuild_q(g, b, c, q, supp, m)
    gap = _gap(c, q, b, xsq, alpha, positive, everyone, k)
    sweeps = 0
    if gap > target and max_iter > 1:
        _greedy(g, diag, c, q, alpha, positive, _GREEDY_STEPS)
    while gap > target and sweeps < max_iter:
        # full sweep: the only place atoms enter the support
        changed = False
        for j in range(k):
            dj = diag[j]
            if dj <= 0.0:
                continue  # a zero atom: its code stays 0
            cj = c[j]
            new = _coordinate(q[j] + dj * cj, dj, alpha, positive)
            c[j] = new  # stored first: compare in the codes' own precision
            if c[j] != cj:
                delta = c[j] - cj
                for h in range(k):
                    q[h] -= delta * g[j, h]
                changed = True
        sweeps += 1
        m = 0
        for j in range(k):
            if c[j] != 0.0:
                supp[m] = j
                m += 1
        gap = _gap(c, q, b, xsq, alpha, positive, everyone, k)
        if gap <= target or not changed or m == 0:
            break  # converged, or a fixed point of CD (the gap is as low as rounding allows)
        # sweeps over the support on its gathered Gram block, q kept on the support only
        for a in range(m):
            ja = supp[a]
            cs[a] = c[ja]
            qs[a] = q[ja]
            for e in range(m):
                gss[a, e] = g[ja, supp[e]]
        inner_target = max(0.5 * target, 0.1 * gap)
        inner = 0
        while sweeps < max_iter:
            moved = False
            for a in range(m):
                da = gss[a, a]
                ca = cs[a]
                new = _coordinate(qs[a] + da * ca, da, alpha, positive)
                cs[a] = new
                if cs[a] != ca:
                    delta = cs[a] - ca
                    for e in range(m):
                        qs[e] -= delta * gss[a, e]
                    moved = True
            sweeps += 1
            inner += 1
            if not moved:
                break
            if inner % _NEWTON_EVERY == 0 and _newton(gss, b, supp, cs, qs, alpha, m, chol, z_):
                sweeps += 1
            for a in range(m):
                c[supp[a]] = cs[a]
                q[supp[a]] = qs[a]
            if _gap(c, q, b, xsq, alpha, positive, supp, m) <= inner_target:
                break
        for a in range(m):
            c[supp[a]] = cs[a]
        _rebuild_q(g, b, c, q, supp, m)  # exact q again (also undoes rounding drift)
        gap = _gap(c, q, b, xsq, alpha, positive, everyone, k)
    return gap


@_jit(nogil=True, parallel=True, fastmath=False)
def _solve_all(g: Any, b: Any, xsq: Any, c: Any, alpha: float, tol: float, max_iter: int,
               positive: bool, n_chunks: int, gaps: Any) -> None:
    n, k = b.shape
    diag = np.empty(k, dtype=g.dtype)
    for j in range(k):
        diag[j] = g[j, j]
    for ch in numba.prange(n_chunks):  # chunks own their scratch; samples strided over chunks
        q = np.empty(k, dtype=np.float64)  # float64 even for float32 data: an exact gap
        supp = np.empty(k, dtype=np.int64)
        everyone = np.arange(k)
        gss = np.empty((k, k), dtype=g.dtype)
        cs = np.empty(k, dtype=g.dtype)
        qs = np.empty(k, dtype=np.float64)
        chol = np.empty((k, k), dtype=np.float64)
        z_ = np.empty(k, dtype=np.float64)
        for i in range(ch, n, n_chunks):
            gaps[i] = _solve_one(g, diag, b[i], float(xsq[i]), c[i], alpha, tol, max_iter,
                                 positive, q, supp, everyone, gss, cs, qs, chol, z_)


def lasso_cd_cpu(
    G: np.ndarray,
    B: np.ndarray,
    xsq: np.ndarray,
    alpha: float,
    C0: np.ndarray | None = None,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    positive: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate-descent lasso for every sample; returns (codes (n, k), gaps (n,)).

    Parameters
    ----------
    G : ndarray (k, k)
        ``D Dᵀ``, float32 or float64.
    B : ndarray (n, k)
        ``X Dᵀ``, same dtype.
    xsq : ndarray (n,)
        ``||x||²`` per sample.
    alpha : float
        Weight of ``α||c||₁``.
    C0 : ndarray (n, k), optional
        Warm start (default: zeros); not modified.
    max_iter : int
        At most this many sweeps per sample (full and support-only sweeps together).
    tol : float
        Stop a sample once its duality gap is ≤ ``tol · ||x||²``.
    positive : bool
        Constrain the codes to be ≥ 0 (``C0`` must then be ≥ 0).
    """
    dtype = G.dtype
    g = np.ascontiguousarray(G)
    b = np.ascontiguousarray(B, dtype=dtype)
    if C0 is None:
        c = np.zeros(b.shape, dtype=dtype)
    else:
        c = np.array(C0, dtype=dtype, order="C", copy=True)
    xs = np.ascontiguousarray(xsq, dtype=np.float64)
    gaps = np.empty(b.shape[0], dtype=np.float64)
    if b.shape[0]:
        n_chunks = min(b.shape[0], 16 * numba.get_num_threads())
        # chunks handed out one at a time (dynamic scheduling): on a shared machine a thread
        # that loses its core must not hold back a fixed share of the samples. Set here, not
        # in the kernel, where it would keep numba from caching the compiled code.
        old = numba.set_parallel_chunksize(1)
        try:
            _solve_all(g, b, xs, c, float(alpha), float(tol), int(max_iter), bool(positive),
                       n_chunks, gaps)
        finally:
            numba.set_parallel_chunksize(old)
    return c, gaps
