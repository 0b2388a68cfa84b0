"""DeepSC's FISTA encoder, one sample at a time, for the compiled layer kernel.

:func:`fista_one` replays ``sparse_encode(method="fista", max_iter=T, tol=tol)`` of
:mod:`.lasso` (``lasso_gram`` with ``inner="fista"``) for one sample from zero codes:
blocks of the support plus the worst KKT violators (widths from :data:`.lasso._WIDTHS`),
rounds of 10 FISTA steps with step 1/λ_max of the block and adaptive restart, each round
ending in an active-set Newton step (:func:`.lasso_cpu._newton`). For ``T ≤ 10`` (DeepSC's
default is 5) that is one block of 8 or 16 atoms and 10 FISTA steps, and the codes equal the
torch solver's to float32 rounding. For ``T > 10`` the torch solver charged every sample
the most iterations any block of its batch used; here each sample is charged its own, so
codes no longer depend on the batch (and differ slightly from the torch solver's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .eig_small import lmax
from .lasso import _GROW, _INNER_REL, _WIDTHS
from .lasso_cpu import _gap, _jit, _newton

__all__ = ["fista_one", "select_first_block"]

_WIDTHS_ARR = np.array(_WIDTHS, dtype=np.int64)
_FISTA_STEPS = 10  # FISTA iterations per round (lasso._solve_block)
_ROUNDS = 8  # rounds per block (lasso._solve_block)


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
def _steps(gw: Any, bw: Any, cw: Any, y: Any, cn: Any, grad: Any, m: int, step: float,
           thresh: float, positive: bool, t: float) -> float:
    """10 FISTA steps with adaptive restart on the block ``gw[:m, :m]``; returns t."""
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
    return t


@_jit(nogil=True, fastmath=False)
def _fista_block(gw: Any, bw: Any, cw: Any, m: int, alpha: float, positive: bool, budget: int,
                 inner_tol: float, xsq: float, need_gap: bool, max_support: int, s: Any,
                 lip: float) -> int:
    """``lasso._solve_block`` (inner="fista") for one sample; returns iterations used.

    ``gw`` (m, m) block Gram, ``bw`` (m,) correlations, ``cw`` (m,) codes (in place),
    ``lip`` its largest eigenvalue (:func:`.eig_small.lmax`).
    """
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
        t = _steps(gw, bw, cw, y, cn, grad, m, step, thresh, positive, t)
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
def fista_one(g: Any, b: Any, xsq: float, c: Any, alpha: float, tol: float, max_iter: int,
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
        width = select_block(c, q, alpha, positive, score, W)
        gather_block(g, b, c, W, width, s)
        lip = lmax(s.gw, width, s.tri, s.d, s.e, s.v, s.p)
        inner_tol = max(0.5 * tol * xsq, _INNER_REL * gap)
        used += _fista_block(gw, bw, cw, width, alpha, positive, max_iter - used, inner_tol,
                             xsq, need_gap, max_support, s, lip)
        for h in range(k):
            c[h] = 0.0
        for a in range(width):
            c[W[a]] = cw[a]


@_jit(nogil=True, fastmath=False, inline="always")
def _width_class(need: int, k: int) -> int:
    """The narrowest block width of :data:`.lasso._WIDTHS` holding ``need`` atoms (≤ k)."""
    width = k
    for w_ in _WIDTHS_ARR:
        if w_ >= need:
            width = w_
            break
    return min(k, width)


@_jit(nogil=True, fastmath=False)
def select_block(c: Any, q: Any, alpha: float, positive: bool, score: Any, W: Any) -> int:
    """The block of one outer iteration: the support of ``c`` plus up to 12 worst KKT
    violators (scores ``|q|``), widened to a class of :data:`.lasso._WIDTHS`; writes the
    block's atoms, best first as ``torch.topk`` orders them, to ``W[:width]`` and returns
    ``width``."""
    k = q.shape[0]
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
    width = _width_class(max(1, n_supp + min(n_viol, _GROW)), k)
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
    return width


@_jit(nogil=True, fastmath=False)
def select_first_block(b: Any, alpha: float, W: Any, topv: Any) -> int:
    """:func:`select_block` for zero codes (``q = b``, no support, ``positive`` False), the
    same ``W[:width]`` in the same order, with the running top values kept in ``topv`` (no
    indirect loads) and the violators counted in a pass that vectorises."""
    k = b.shape[0]
    n_viol = 0
    for h in range(k):
        n_viol += abs(b[h]) > alpha
    width = _width_class(max(1, min(n_viol, _GROW)), k)
    top = 0
    for h in range(k):
        v = abs(b[h])
        if top == width and v <= topv[top - 1]:
            continue
        a = top if top < width else width - 1
        while a > 0 and topv[a - 1] < v:
            W[a] = W[a - 1]
            topv[a] = topv[a - 1]
            a -= 1
        W[a] = h
        topv[a] = v
        if top < width:
            top += 1
    return width


@_jit(nogil=True, fastmath=False)
def gather_block(g: Any, b: Any, c: Any, W: Any, width: int, s: Any) -> None:
    """The block's Gram ``s.gw``, correlations ``s.bw`` and codes ``s.cw`` from atoms
    ``W[:width]``."""
    for a in range(width):
        ja = W[a]
        s.cw[a] = c[ja]
        s.bw[a] = b[ja]
        for e in range(width):
            s.gw[a, e] = g[ja, W[e]]
