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
     tol=0)`` of :mod:`.lasso` replayed per sample (:func:`.fista_cpu.fista_one`); for
     ``T ≤ 10`` (DeepSC's default 5) the codes equal the torch solver's to float32
     rounding (``tests/sparse_coding/test_layer_kernel.py``);
   * ``"cd"``: the exact lasso, :func:`.lasso_cpu._solve_one` (coordinate descent with
     covariance updates, duality-gap stop at ``tol · ||x||²``), the kernel behind
     ``sparse_encode(method="cd")`` on CPU;

3. max-pools the (polarity-split) codes straight into the spatial-pyramid features and the
   local p×p map that feeds the next layer.

Two exact shortcuts: a patch equal to the previous position's patch reuses its codes, and
every constant patch (blank background: it normalises to the zero vector) reuses the codes
of the first one of its image. Both give bit-identical codes, so nothing approximates.

FISTA's step needs the largest eigenvalue of each patch's block Gram matrix:
:func:`.eig_small.lmax` (Lanczos + Laguerre, ~2 µs where LAPACK through numba took 15). With
DeepSC's encoder (one block and ten FISTA steps per patch) an image's blocks are first all
chosen, then solved :data:`.eig_small.LANES` at a time, side by side
(:func:`.eig_small.lmax_gathered`, :func:`.fista_lanes.fista_lanes`: the same numbers bit for
bit, as vector loops over patches); docs/deepsc.md, "Patches side by side", has the
measurements.

Developer note: numba's on-disk cache of :func:`_layer` is invalidated by changes to this
file only. After editing :mod:`.fista_cpu`, :mod:`.eig_small` or :mod:`.lasso_cpu`, delete
``sparsenet/sparse_coding/__pycache__/layer_kernel.*.nb?`` (or set ``NUMBA_CACHE_DIR`` to a
fresh folder), or the old code they compiled into it keeps running.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numba
import numpy as np

from .eig_small import LANES, gather_lanes, lmax_gathered
from .fista_cpu import _FISTA_STEPS, fista_one, select_first_block
from .fista_lanes import fista_lanes
from .lasso_cpu import _jit, _solve_one
from .pooling import pyramid_cells

__all__ = ["layer_kernel", "pyramid_cells", "SOLVERS"]

SOLVERS = ("fista", "cd")

# per-thread scratch of the solvers, allocated once per image (see _scratch)
_Scratch = namedtuple(
    "_Scratch", "q score W gw bw cw y cn grad before tri d e v p ident qw chol z everyone"
)


@_jit(nogil=True, fastmath=False)
def _scratch(k: int, dtype: Any) -> Any:
    """Scratch for :func:`.fista_cpu.fista_one` / :func:`.lasso_cpu._solve_one` with ``k``
    atoms."""
    return _Scratch(
        np.empty(k, dtype=np.float64),  # q
        np.empty(k, dtype=np.float64),  # score
        np.empty(k, dtype=np.int64),  # W
        np.zeros((k, k), dtype=dtype),  # gw (also gss of _solve_one)
        np.zeros(k, dtype=dtype),  # bw
        np.zeros(k, dtype=dtype),  # cw (also cs of _solve_one)
        np.zeros(k, dtype=dtype),  # y
        np.zeros(k, dtype=dtype),  # cn
        np.zeros(k, dtype=dtype),  # grad
        np.zeros(k, dtype=np.bool_),  # before
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
           want_pooled: bool, lanes: int) -> None:
    """Encode and pool every patch of every image of ``maps`` (B, h, w, C); see the module.

    ``mode`` 0: no whitening, ``dt`` = Dᵀ (P, K); 1: whitened, ``wz`` = W_zca Dᵀ (P, K)
    (``||x||²`` not computed); 2: whitened, ``wz`` = W_zca (P, P) and ``dt`` = Dᵀ.
    ``cells`` (n_cells, 4): the pyramid's cells [row0, row1, col0, col1) in output order.
    Writes ``feats`` (B, n_cells · K') and ``pooled`` (B, ph, pw, K'), K' = 2K with
    ``polarity`` (positive parts, then negative parts), else K. ``lanes``:
    :data:`.eig_small.LANES`, passed in so that LLVM does not see a constant (see
    :func:`.eig_small.lmax_gathered`).

    Per image, three passes: (1) every position's patch is gathered and either mapped to an
    earlier solve (same as the previous patch, or a constant patch once one is coded) or
    becomes a new solve; (2) the solves are coded; (3) every position's codes are pooled.
    With DeepSC's FISTA encoder (``not need_xsq``: one block per patch) pass 2 solves
    :data:`.eig_small.LANES` blocks of one width at a time, side by side (:func:`_solve_blocks`),
    which is what makes the passes worth it; the codes are those of the one-patch path.
    """
    nb, h, w, nch = maps.shape
    k = g.shape[0]
    kp = 2 * k if polarity else k
    dim = nch * size * size
    gh = (h - size) // stride + 1
    gw_ = (w - size) // stride + 1
    npos = gh * gw_
    fast = not need_xsq
    diag = np.empty(k, dtype=g.dtype)
    for j in range(k):
        diag[j] = g[j, j]
    for n in numba.prange(nb):
        s = _scratch(k, g.dtype)
        raw = np.empty(dim, dtype=np.float32)
        prev = np.empty(dim, dtype=np.float32)
        x = np.empty(dim, dtype=np.float32)
        xw = np.empty(dim, dtype=np.float32)
        slot = np.empty(npos, dtype=np.int64)  # position → its solve
        codes = np.empty((npos, k), dtype=g.dtype)  # solve → codes
        bs = np.empty((npos if fast else 1, k), dtype=g.dtype)  # solve → correlations
        sel = np.empty((npos if fast else 1, 16), dtype=np.int64)  # solve → block atoms
        widths = np.zeros(npos, dtype=np.int64)  # solve → block width (0: zero codes)
        lips = np.empty(npos, dtype=np.float64)  # solve → the block's λ_max
        n_solve = 0
        blank = -1
        for i in range(gh):
            for j in range(gw_):
                pos = i * gw_ + j
                idx = 0
                for ch in range(nch):  # the F.unfold layout: (channel, row, column)
                    for di in range(size):
                        for dj in range(size):
                            raw[idx] = maps[n, i * stride + di, j * stride + dj, ch]
                            idx += 1
                same = pos > 0
                if same:
                    for a in range(dim):
                        if raw[a] != prev[a]:
                            same = False
                            break
                if same:
                    slot[pos] = slot[pos - 1]
                    continue
                constant = True
                for a in range(1, dim):
                    if raw[a] != raw[0]:
                        constant = False
                        break
                for a in range(dim):
                    prev[a] = raw[a]
                if constant and blank >= 0:
                    slot[pos] = blank
                    continue
                sid = n_solve
                n_solve += 1
                slot[pos] = sid
                if constant:
                    blank = sid
                if fast:
                    b = bs[sid]
                    _correlate(raw, x, xw, b, eps, mode, mean, wz, dt)
                    worst = 0.0
                    for a in range(k):
                        worst = max(worst, abs(b[a]))
                        codes[sid, a] = 0.0
                    if worst > alpha:  # else zero codes (fista_one's first test)
                        widths[sid] = select_first_block(b, alpha, sel[sid], s.q)
                else:
                    _encode_patch(raw, x, xw, bs[0], codes[sid], s, diag, eps, mode, mean,
                                  wz, dt, g, alpha, cd, max_iter, tol, need_xsq, max_support)
        if fast:
            _solve_blocks(g, bs, codes, sel, widths, lips, n_solve, alpha, lanes)
        if want_feats:
            for f in range(feats.shape[1]):
                feats[n, f] = -np.inf
        if want_pooled:
            for oi in range(pooled.shape[1]):
                for oj in range(pooled.shape[2]):
                    for f in range(kp):
                        pooled[n, oi, oj, f] = -np.inf
        for i in range(gh):
            for j in range(gw_):
                code = codes[slot[i * gw_ + j]]
                if want_feats:
                    for cell in range(cells.shape[0]):
                        if cells[cell, 0] <= i < cells[cell, 1] and \
                                cells[cell, 2] <= j < cells[cell, 3]:
                            _pool_into(feats[n], cell * kp, code, k, polarity)
                if want_pooled:
                    i0 = max(0, (i - pool_size + pool_stride) // pool_stride)
                    j0 = max(0, (j - pool_size + pool_stride) // pool_stride)
                    for oi in range(i0, min(pooled.shape[1], i // pool_stride + 1)):
                        for oj in range(j0, min(pooled.shape[2], j // pool_stride + 1)):
                            _pool_into(pooled[n, oi, oj], 0, code, k, polarity)


@_jit(nogil=True, fastmath=False)
def _solve_blocks(g: Any, bs: Any, codes: Any, sel: Any, widths: Any, lips: Any, n_solve: int,
                  alpha: float, lanes: int) -> None:
    """Pass 2 of :func:`_layer` for the FISTA encoder: the solves' blocks, ``lanes`` of one
    width at a time, side by side (:func:`.eig_small.gather_lanes`), their λ_max
    (:func:`.eig_small.lmax_gathered`) and FISTA steps (:func:`.fista_lanes.fista_lanes`)."""
    pend = np.empty((17, lanes), dtype=np.int64)
    count = np.zeros(17, dtype=np.int64)
    for sid in range(n_solve + 17):
        if sid < n_solve:
            m = widths[sid]
            if m == 0:
                continue
            pend[m, count[m]] = sid
            count[m] += 1
            if count[m] < lanes:
                continue
        else:  # the last, partial groups (padded: the vector loops need 32 lanes)
            m = sid - n_solve
            if count[m] == 0:
                continue
        nl = count[m]
        width = lanes if nl >= 8 else nl
        a = gather_lanes(g, sel, pend[m], nl, m, width)
        lmax_gathered(a, pend[m], nl, m, width, lips)
        fista_lanes(a, bs, sel, pend[m], nl, m, width, alpha, lips, codes)
        count[m] = 0


@_jit(nogil=True, fastmath=False, inline="always")
def _pool_into(out: Any, base: int, code: Any, k: int, polarity: bool) -> None:
    """``out[base:base + K'] = max(out, split_polarity(code))``, branch-free (vectorises;
    with branches the random signs of the codes cost more than the arithmetic).

    Written out as ``max`` is (``b if b > a else a``, signed zeros included) but in float32:
    ``max(v, 0.0)`` compared in float64 and cost 3.6× as much (one conversion per value).
    """
    zero = np.float32(0.0)
    if polarity:
        for h in range(k):
            v = code[h]
            pv = zero if zero > v else v
            a = out[base + h]
            out[base + h] = pv if pv > a else a
        for h in range(k):
            v = -code[h]
            pv = zero if zero > v else v
            a = out[base + k + h]
            out[base + k + h] = pv if pv > a else a
    else:
        for h in range(k):
            v = code[h]
            a = out[base + h]
            out[base + h] = v if v > a else a


@_jit(nogil=True, fastmath=False)
def _correlate(raw: Any, x: Any, xw: Any, b: Any, eps: float, mode: int, mean: Any, wz: Any,
               dt: Any) -> float:
    """Normalise and whiten one patch and correlate it with the atoms into ``b``; returns
    ``||x||²`` of the whitened patch (0 in ``mode`` 1, which does not need it)."""
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
    return xsq


@_jit(nogil=True, fastmath=False)
def _encode_patch(raw: Any, x: Any, xw: Any, b: Any, code: Any, s: Any, diag: Any, eps: float,
                  mode: int, mean: Any, wz: Any, dt: Any, g: Any, alpha: float, cd: bool,
                  max_iter: int, tol: float, need_xsq: bool, max_support: int) -> None:
    """Normalise, whiten and correlate one patch, then solve its lasso into ``code``."""
    k = b.shape[0]
    xsq = _correlate(raw, x, xw, b, eps, mode, mean, wz, dt)
    if cd:
        for h in range(k):
            code[h] = 0.0
        _solve_one(g, diag, b, xsq, code, alpha, tol, max_iter, False, s.q, s.W, s.everyone,
                   s.gw, s.cw, s.qw, s.chol, s.z)
    else:
        fista_one(g, b, xsq, code, alpha, tol, max_iter, False, need_xsq, max_support, s)


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
    overlap: Any = (),
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
    overlap : overlapping pyramid levels, after ``levels`` (:func:`.pooling.pyramid_cells`)
    pool : (p, s) local max pooling, or None for no pooled map
    want_feats : compute the pyramid features

    Returns
    -------
    feats : ndarray (B, n_cells · K') float32, or None (``n_cells = pyramid_size(levels,
        overlap)``)
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
    cells = (pyramid_cells(gh, gw, levels, overlap) if want_feats
             else np.zeros((0, 4), dtype=np.int64))
    feats = np.empty((nb, len(cells) * kp), dtype=np.float32)
    if pool is None:
        p_size, p_stride, ph, pw = 1, 1, 0, 0
    else:
        p_size, p_stride = pool
        ph, pw = (gh - p_size) // p_stride + 1, (gw - p_size) // p_stride + 1
    pooled = np.empty((nb, ph, pw, kp), dtype=np.float32)
    if nb:
        # images handed out one at a time (dynamic scheduling), as in lasso_cpu: on a shared
        # machine a thread that loses its core must not hold back a fixed half of the chunk
        old = numba.set_parallel_chunksize(1)
        try:
            _layer(x, int(size), int(stride), float(eps), mode, mean, wz, dt, g, float(alpha),
                   solver == "cd", int(max_iter), float(tol), need_xsq, dim, bool(polarity),
                   cells, int(p_size), int(p_stride), feats, pooled, bool(want_feats),
                   pool is not None, LANES)
        finally:
            numba.set_parallel_chunksize(old)
    return (feats if want_feats else None), (pooled if pool is not None else None)
