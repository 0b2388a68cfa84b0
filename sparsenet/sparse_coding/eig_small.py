"""The largest eigenvalue of a small symmetric matrix, inside numba-compiled code.

FISTA's step on a lasso block is 1/λ_max of the block's Gram matrix (8–16 atoms in
DeepSC's encoder), needed once per patch. LAPACK's ``eigvalsh`` through numba cost 15 µs
per 16×16 block (one shared core), as much as the whole encoding of a patch may; Lanczos
plus Laguerre (:func:`lmax`) costs about 2 µs and agrees to 1e-7 relative
(``tests/sparse_coding/test_layer_kernel.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .lasso_cpu import _jit

__all__ = ["lmax"]



@_jit(nogil=True, fastmath=False)
def lmax(blk: Any, m: int, a: Any, d: Any, e: Any, v: Any, p: Any) -> float:
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
    steps = _lanczos(blk, n, a[0], d, e, v, p)
    if steps < n:  # broke down early: an invariant subspace that may miss λ_max
        _householder(blk, n, a, d, e, v, p)
        steps = n
    return _laguerre_top(d, e, steps)


@_jit(nogil=True, fastmath=False)
def _lanczos(blk: Any, n: int, w: Any, d: Any, e: Any, v: Any, p: Any) -> int:
    """Lanczos tridiagonalisation of ``blk[:n, :n]`` into (d, e); returns the steps done
    (n, or fewer when it broke down)."""
    norm = 0.0
    for i in range(n):  # a start vector unlikely to be orthogonal to any eigenvector
        v[i] = 1.0 + 0.61803398875 * ((i * 7) % n) / n
        norm += v[i] * v[i]
    norm = np.sqrt(norm)
    for i in range(n):
        v[i] /= norm
        p[i] = 0.0
    beta = 0.0
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
            return n
        beta = 0.0
        for i in range(n):
            w[i] -= alpha * v[i]
            beta += w[i] * w[i]
        beta = np.sqrt(beta)
        e[step] = beta
        if beta <= 1e-9 * abs(alpha) + 1e-300:
            return step + 1
        for i in range(n):
            p[i] = v[i]
            v[i] = w[i] / beta
    return n


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


