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

__all__ = ["lmax", "gather_lanes", "lmax_gathered", "LANES"]

LANES = 32  # blocks side by side (LLVM's vector loops need at least 32 iterations)



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
def gather_lanes(g: Any, sel: Any, slots: Any, nl: int, n: int, lanes: int) -> Any:
    """Blocks ``g[sel[s, :n]][:, sel[s, :n]]`` of the solves ``s = slots[q]``, q < nl, side by
    side: ``a[i, j, q]``, (n, n, lanes) in g's dtype (float32: 32 KB, fits L1); padding lanes
    (q ≥ nl) hold the identity."""
    a = np.empty((n, n, lanes), dtype=g.dtype)
    for q in range(lanes):
        if q < nl:
            row = sel[slots[q]]
            for i in range(n):
                gi = g[row[i]]
                for j in range(n):
                    a[i, j, q] = gi[row[j]]
        else:
            for i in range(n):
                for j in range(n):
                    a[i, j, q] = 1.0 if i == j else 0.0
    return a


@_jit(nogil=True, fastmath=False, error_model="numpy")
def lmax_gathered(a: Any, slots: Any, nl: int, n: int, lanes: int, out: Any) -> None:
    """:func:`lmax` of the ``nl`` blocks side by side in ``a`` (:func:`gather_lanes`), bit for
    bit: ``out[slots[q]]`` = λ_max of ``a[:, :, q]``.

    Why by hand, and why lanes: one block's Lanczos is a chain of dependent 16-wide steps
    that numba compiles to scalar code (≈ 2 µs per 16×16 block, a third of DeepSC's
    encoding time). Here the same float64 operations, in the same order, run on ``lanes``
    blocks side by side (the block index innermost), so every step is a vector operation
    over blocks; the results are those of :func:`lmax` exactly (tested). ``lanes`` ≥ ``nl``
    comes in as an argument, not a constant: with a constant trip count LLVM unrolls the
    lane loops and then cannot vectorise them. A lane whose Lanczos breaks down is redone by
    :func:`lmax` (its Householder fallback).
    """
    if n == 1:
        for q in range(nl):
            out[slots[q]] = float(a[0, 0, q])
        return
    v = np.empty((n, lanes))
    w = np.empty((n, lanes))
    p = np.empty((n, lanes))
    d = np.empty((n, lanes))
    e = np.empty((n, lanes))
    beta = np.zeros(lanes)
    alpha = np.empty(lanes)
    steps = np.full(lanes, n)
    norm = 0.0
    for i in range(n):
        vi = 1.0 + 0.61803398875 * ((i * 7) % n) / n
        norm += vi * vi
    norm = np.sqrt(norm)
    for i in range(n):
        vi = (1.0 + 0.61803398875 * ((i * 7) % n) / n) / norm
        for q in range(lanes):
            v[i, q] = vi
            p[i, q] = 0.0
    for step in range(n):
        for i in range(n):
            for q in range(lanes):
                w[i, q] = -beta[q] * p[i, q]
        for j in range(n):
            for i in range(n):
                for q in range(lanes):
                    w[i, q] += float(a[j, i, q]) * v[j, q]
        for q in range(lanes):
            alpha[q] = 0.0
        for i in range(n):
            for q in range(lanes):
                alpha[q] += w[i, q] * v[i, q]
        for q in range(lanes):
            d[step, q] = alpha[q]
        if step == n - 1:
            break
        for q in range(lanes):
            beta[q] = 0.0
        for i in range(n):
            for q in range(lanes):
                w[i, q] -= alpha[q] * v[i, q]
                beta[q] += w[i, q] * w[i, q]
        for q in range(lanes):
            beta[q] = np.sqrt(beta[q])
            e[step, q] = beta[q]
            if beta[q] <= 1e-9 * abs(alpha[q]) + 1e-300:
                if steps[q] == n:
                    steps[q] = step + 1  # broke down: redone by lmax below
                beta[q] = 1.0
        for i in range(n):
            for q in range(lanes):
                p[i, q] = v[i, q]
                v[i, q] = w[i, q] / beta[q]
    live = np.zeros(lanes, dtype=np.bool_)  # padding and broken-down lanes: not iterated
    for q in range(nl):
        live[q] = steps[q] == n
    top = _laguerre_lanes(d, e, n, lanes, live)
    for q in range(nl):
        s = slots[q]
        if steps[q] < n:
            blk = np.ascontiguousarray(a[:, :, q])
            out[s] = lmax(blk, n, np.empty((n, n)), np.empty(n), np.empty(n), np.empty(n),
                          np.empty(n))
        else:
            out[s] = top[q]


@_jit(nogil=True, fastmath=False, error_model="numpy")
def _laguerre_lanes(d: Any, e: Any, n: int, lanes: int, live: Any) -> Any:
    """:func:`_laguerre_top` of the tridiagonals ``(d[:, q], e[:, q])`` (n ≥ 2) of the lanes
    with ``live[q]`` (modified), bit for bit: the recurrences run over all lanes at once
    (vectorised), each lane's iteration and stopping tests as in the scalar version; a
    stopped lane keeps its x."""
    x = np.full(lanes, -np.inf)
    for i in range(n):
        for q in range(lanes):
            rad = (abs(e[i - 1, q]) if i > 0 else 0.0) + (abs(e[i, q]) if i < n - 1 else 0.0)
            x[q] = max(x[q], d[i, q] + rad)
    scale = np.empty(lanes)
    for q in range(lanes):
        scale[q] = max(abs(x[q]), 1e-300)
    f0, f1 = np.empty(lanes), np.empty(lanes)
    g0, g1 = np.empty(lanes), np.empty(lanes)
    h0, h1 = np.empty(lanes), np.empty(lanes)
    even = n % 2 == 0
    for _ in range(100):
        for q in range(lanes):
            f0[q] = 1.0
            f1[q] = d[0, q] - x[q]
            g0[q] = 0.0
            g1[q] = -1.0
            h0[q] = 0.0
            h1[q] = 0.0
        for i in range(1, n):
            for q in range(lanes):
                ee = e[i - 1, q] * e[i - 1, q]
                dx = d[i, q] - x[q]
                f2 = dx * f1[q] - ee * f0[q]
                g2 = dx * g1[q] - f1[q] - ee * g0[q]
                h2 = dx * h1[q] - 2.0 * g1[q] - ee * h0[q]
                f0[q], f1[q], g0[q], g1[q], h0[q], h1[q] = f1[q], f2, g1[q], g2, h1[q], h2
        more = False
        for q in range(lanes):
            if not live[q]:
                continue
            live[q] = False
            fq = f1[q]
            if fq == 0.0 or (fq > 0) != even:
                continue
            gg = g1[q] / fq
            hh = gg * gg - h1[q] / fq
            disc = (n - 1) * (n * hh - gg * gg)
            den = gg + np.sqrt(disc) if disc > 0 else gg
            if not den > 0.0:
                continue
            step = n / den
            x_new = x[q] - step
            if not x_new < x[q]:
                continue
            x[q] = x_new
            if step <= 1e-12 * scale[q]:
                continue
            live[q] = True
            more = True
        if not more:
            break
    return x


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


