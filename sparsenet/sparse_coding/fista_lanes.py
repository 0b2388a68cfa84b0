"""DeepSC's FISTA block solve on 32 patches side by side, bit for bit the one-patch solve.

With DeepSC's encoder (``max_iter ≤ 10``, ``tol = 0``) :func:`.fista_cpu.fista_one` does, for
a patch whose codes are not all zero, one block of 8 or 16 atoms and exactly ten FISTA steps
from zero codes (its support-Newton step needs a support that did not change during the
round, which from zero codes means no support: it never runs). Those ten steps are loops of
8 or 16 iterations, which LLVM does not vectorise (its vector loops need at least 32);
:func:`fista_lanes` runs the same float operations, in the same order, on the blocks of
:data:`.eig_small.LANES` patches at once, the patch index innermost, so every loop is a
vector loop over patches. The codes equal :func:`.fista_cpu.fista_one`'s exactly
(``tests/sparse_coding/test_fista_lanes.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fista_cpu import _FISTA_STEPS
from .lasso_cpu import _jit

__all__ = ["fista_lanes"]


@_jit(nogil=True, fastmath=False, error_model="numpy")
def fista_lanes(a: Any, bs: Any, sel: Any, slots: Any, nl: int, n: int, lanes: int,
                alpha: float, lips: Any, codes: Any) -> None:
    """Ten FISTA steps from zero codes on ``nl`` blocks side by side; codes into ``codes``.

    Parameters
    ----------
    a : (n, n, lanes) float32, the blocks' Gram matrices (:func:`.eig_small.gather_lanes`)
    bs : (solves, K) correlations ``b`` of each solve; ``sel`` (solves, ≥ n) block atoms
    slots : (≥ nl,) the solve of each lane; ``lanes`` ≥ ``nl`` (an argument, not a
        constant, so that the lane loops vectorise)
    lips : (solves,) λ_max of each solve's block; ``codes`` (solves, K), zero on entry
    """
    dt = a.dtype
    bw = np.zeros((n, lanes), dtype=dt)
    cw = np.zeros((n, lanes), dtype=dt)
    y = np.zeros((n, lanes), dtype=dt)
    cn = np.empty((n, lanes), dtype=dt)
    grad = np.empty((n, lanes), dtype=dt)
    step = np.zeros(lanes)
    thresh = np.zeros(lanes)
    t = np.ones(lanes)
    dot = np.empty(lanes)
    mom = np.empty(lanes)
    for q in range(nl):
        s = slots[q]
        lip = lips[s]
        step[q] = 1.0 / lip if lip > 0 else 0.0
        thresh[q] = alpha * step[q]
        for i in range(n):
            bw[i, q] = bs[s, sel[s, i]]
    for _ in range(_FISTA_STEPS):
        for i in range(n):  # grad = y G − b, skipping y_e = 0 as the one-patch loop does
            for q in range(lanes):
                grad[i, q] = -bw[i, q]
        for e in range(n):
            for i in range(n):
                for q in range(lanes):
                    ye = y[e, q]
                    gq = grad[i, q]
                    grad[i, q] = gq + ye * a[e, i, q] if ye != 0 else gq
        for i in range(n):  # soft threshold (positive=False), in float64 as _soft
            for q in range(lanes):
                z = float(y[i, q]) - step[q] * float(grad[i, q])
                th = thresh[q]
                cn[i, q] = z - th if z > th else (z + th if z < -th else 0.0)
        for q in range(lanes):
            dot[q] = 0.0
        for i in range(n):
            for q in range(lanes):
                dot[q] += (float(y[i, q]) - float(cn[i, q])) * (float(cn[i, q]) - float(cw[i, q]))
        for q in range(lanes):
            if dot[q] > 0:  # adaptive restart
                t[q] = 1.0
        for q in range(lanes):
            tn = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t[q] * t[q]))
            mom[q] = (t[q] - 1.0) / tn
            t[q] = tn
        for i in range(n):
            for q in range(lanes):
                y[i, q] = cn[i, q] + mom[q] * (float(cn[i, q]) - float(cw[i, q]))
                cw[i, q] = cn[i, q]
    for q in range(nl):
        s = slots[q]
        for i in range(n):
            codes[s, sel[s, i]] = cw[i, q]
