# mypy: ignore-errors
# (numba-compiled code: scalar types are numba's, not numpy's stubs)
"""numba kernels of sparse Linear and Conv2d over the packed entries of :mod:`.compact`.

Activations are *feature-major, batch-last* flat arrays: ``x`` of a Linear is ``(K, B)``,
of a convolution ``(C, Hp, Wp, B)`` (already padded).

Weights: ``sp`` segment pointers (int32), ``ent`` packed entries (uint16: code above
``sh`` = colbits bits of column offset), ``cb`` the codebook; ``mode`` 0: codebook, 1: a
value per entry in ``vals``, 2: dense row-major ``vals`` (N·K, for layers kept dense).

* Linear, batch 1: per row, a dot product with four independent partial sums; each entry
  decodes on its own (shift and mask), so the loads of consecutive entries overlap.
* Linear, batch > 1: per row, ``acc[0:B] += w · x[col, 0:B]`` for each entry: a contiguous,
  vectorised run over the batch.
* Conv2d: direct sparse convolution. Each non-zero ``(c, ky, kx)`` adds ``w ·`` one
  contiguous slice of the padded input to a "wide" accumulator whose rows have the padded
  input's width (the extra columns are discarded); a strided convolution first splits its
  input into phase planes so that this holds for every stride.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from .jitbase import finish, finish_rows, jit

__all__ = ["linear", "conv2d"]


@jit(inline="always")
def _dot_codes(e: int, end: int, ent: Any, cb: Any, x: Any, base: int, sh: int, z: Any) -> Any:
    """``Σ cb[code_e] · x[base + col_e]`` over entries ``e..end``, four partial sums.

    Indices are unsigned (``uintp``) so that numba emits no negative-index wraparound;
    that alone made this loop 1.45× faster.
    """
    u, ue, s = np.uintp(e), np.uintp(end), np.uintp(sh)
    ub, one, four = np.uintp(base), np.uintp(1), np.uintp(4)
    mask = (one << s) - one
    a0, a1, a2, a3 = z, z, z, z
    while u + four <= ue:
        v0, v1 = np.uintp(ent[u]), np.uintp(ent[u + one])
        v2, v3 = np.uintp(ent[u + np.uintp(2)]), np.uintp(ent[u + np.uintp(3)])
        a0 += cb[v0 >> s] * x[ub + (v0 & mask)]
        a1 += cb[v1 >> s] * x[ub + (v1 & mask)]
        a2 += cb[v2 >> s] * x[ub + (v2 & mask)]
        a3 += cb[v3 >> s] * x[ub + (v3 & mask)]
        u += four
    while u < ue:
        v = np.uintp(ent[u])
        a0 += cb[v >> s] * x[ub + (v & mask)]
        u += one
    return (a0 + a1) + (a2 + a3)


@jit(inline="always")
def _dot_values(e: int, end: int, ent: Any, vals: Any, x: Any, base: int, sh: int, z: Any) -> Any:
    """As :func:`_dot_codes` with a value per entry."""
    u, ue = np.uintp(e), np.uintp(end)
    ub, one, four = np.uintp(base), np.uintp(1), np.uintp(4)
    mask = (one << np.uintp(sh)) - one
    a0, a1, a2, a3 = z, z, z, z
    while u + four <= ue:
        a0 += vals[u] * x[ub + (np.uintp(ent[u]) & mask)]
        a1 += vals[u + one] * x[ub + (np.uintp(ent[u + one]) & mask)]
        a2 += vals[u + np.uintp(2)] * x[ub + (np.uintp(ent[u + np.uintp(2)]) & mask)]
        a3 += vals[u + np.uintp(3)] * x[ub + (np.uintp(ent[u + np.uintp(3)]) & mask)]
        u += four
    while u < ue:
        a0 += vals[u] * x[ub + (np.uintp(ent[u]) & mask)]
        u += one
    return (a0 + a1) + (a2 + a3)


@jit(inline="always")
def _dot_dense(i: int, vals: Any, x: Any, z: Any) -> Any:
    K = x.shape[0]
    a0, a1, a2, a3 = z, z, z, z
    base = i * K
    j = 0
    while j + 4 <= K:
        a0 += vals[base + j] * x[j]
        a1 += vals[base + j + 1] * x[j + 1]
        a2 += vals[base + j + 2] * x[j + 2]
        a3 += vals[base + j + 3] * x[j + 3]
        j += 4
    while j < K:
        a0 += vals[base + j] * x[j]
        j += 1
    return (a0 + a1) + (a2 + a3)


@jit(inline="always")
def _axpy(e: int, end: int, ent: Any, cb: Any, vals: Any, mode: int, x: Any, acc: Any,
          base: int, sh: int, B: int) -> None:
    """``acc[0:B] += Σ_e w_e · x[(base + col_e)·B : … + B]`` over entries ``e..end``.

    Four entries per pass over ``acc`` (a quarter of the accumulator loads and stores: 2.1×
    faster than one entry per pass on a random layer of LeNet-300 fc1's shape at batch 64,
    ``docs/runtime.md``); unsigned indices, as
    in :func:`_dot_codes`.
    """
    s, one, ub, uB = np.uintp(sh), np.uintp(1), np.uintp(base), np.uintp(B)
    mask = (one << s) - one
    u, ue, four = np.uintp(e), np.uintp(end), np.uintp(4)
    while u + four <= ue:
        v0, v1 = np.uintp(ent[u]), np.uintp(ent[u + one])
        v2, v3 = np.uintp(ent[u + np.uintp(2)]), np.uintp(ent[u + np.uintp(3)])
        if mode == 0:
            w0, w1, w2, w3 = cb[v0 >> s], cb[v1 >> s], cb[v2 >> s], cb[v3 >> s]
        else:
            w0, w1 = vals[u], vals[u + one]
            w2, w3 = vals[u + np.uintp(2)], vals[u + np.uintp(3)]
        o0, o1 = (ub + (v0 & mask)) * uB, (ub + (v1 & mask)) * uB
        o2, o3 = (ub + (v2 & mask)) * uB, (ub + (v3 & mask)) * uB
        x0, x1, x2, x3 = x[o0:o0 + uB], x[o1:o1 + uB], x[o2:o2 + uB], x[o3:o3 + uB]
        for b in range(uB):
            acc[b] += (w0 * x0[b] + w1 * x1[b]) + (w2 * x2[b] + w3 * x3[b])
        u += four
    while u < ue:
        v = np.uintp(ent[u])
        w = cb[v >> s] if mode == 0 else vals[u]
        xo = (ub + (v & mask)) * uB
        for b in range(uB):
            acc[b] += w * x[xo + b]
        u += one


@jit()
def _linear_rows(i0: int, i1: int, sp: Any, ent: Any, cb: Any, vals: Any, mode: int, sh: int,
                 nseg: int, x: Any, y: Any, K: int, B: int, scale: Any, shift: Any, act: int) -> None:
    z = np.zeros(1, dtype=x.dtype)[0]
    if B == 1:
        if mode == 2:
            for i in range(i0, i1):
                y[i] = _dot_dense(i, vals, x, z)
        elif nseg == 1:
            if mode == 0:
                for i in range(i0, i1):
                    y[i] = _dot_codes(sp[i], sp[i + 1], ent, cb, x, 0, sh, z)
            else:
                for i in range(i0, i1):
                    y[i] = _dot_values(sp[i], sp[i + 1], ent, vals, x, 0, sh, z)
        else:
            for i in range(i0, i1):
                a = z
                for s in range(nseg):
                    p = i * nseg + s
                    if mode == 0:
                        a += _dot_codes(sp[p], sp[p + 1], ent, cb, x, s << sh, sh, z)
                    else:
                        a += _dot_values(sp[p], sp[p + 1], ent, vals, x, s << sh, sh, z)
                y[i] = a
        finish_rows(y, i0, i1, scale, shift, act)
        return
    for i in range(i0, i1):
        acc = y[i * B:(i + 1) * B]
        acc[:] = 0
        if mode == 2:
            for j in range(K):
                w = vals[i * K + j]
                for b in range(B):
                    acc[b] += w * x[j * B + b]
        else:
            for s in range(nseg):
                p = i * nseg + s
                _axpy(sp[p], sp[p + 1], ent, cb, vals, mode, x, acc, s << sh, sh, B)
        finish(acc, 0, acc, 0, B, i, scale, shift, act)


@jit(parallel=True)
def _linear_par(sp: Any, ent: Any, cb: Any, vals: Any, mode: int, sh: int, nseg: int, x: Any,
                y: Any, N: int, K: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    per = (N + nt - 1) // nt
    for t in prange(nt):
        _linear_rows(t * per, min(N, (t + 1) * per), sp, ent, cb, vals, mode, sh, nseg, x, y, K,
                     B, scale, shift, act)


@jit()
def linear(sp: Any, ent: Any, cb: Any, vals: Any, mode: int, sh: int, nseg: int, x: Any, y: Any,
           N: int, K: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    """``y (N, B) = act(scale · (W x) + shift)`` for ``x (K, B)``, flat batch-last arrays.

    ``scale``/``shift`` (N,) or empty; ``nt`` > 1 splits the rows over that many threads.
    """
    if nt > 1:
        _linear_par(sp, ent, cb, vals, mode, sh, nseg, x, y, N, K, B, scale, shift, act, nt)
    else:
        _linear_rows(0, N, sp, ent, cb, vals, mode, sh, nseg, x, y, K, B, scale, shift, act)


@jit(inline="always")
def _tap_base(col: int, khw: int, kw: int, C: int, Hh: int, Wh: int, dh: int, dw: int, sh: int,
              sw: int, B: int) -> Any:
    """Offset of weight column ``col`` = (c, ky, kx) in the phase planes of the input.

    Input row ``oy·sh + ky·dh`` is row ``oy + (ky·dh) // sh`` of phase ``(ky·dh) % sh``
    (columns alike), so every tap reads one contiguous run of its phase plane
    ``(sh·sw, C, Hh, Wh, B)``; for stride 1 that plane is the padded input itself.
    """
    c = col // khw
    r = col - c * khw
    ky = r // kw
    ry = ky * dh  # the tap's row offset
    rx = (r - ky * kw) * dw  # and column offset
    return np.uintp((((((ry % sh) * sw + rx % sw) * C + c) * Hh + ry // sh) * Wh + rx // sw) * B)


@jit()
def _phases(x: Any, C: int, Hp: int, Wp: int, sh: int, sw: int, B: int) -> Any:
    """The padded input (C, Hp, Wp, B) as ``sh·sw`` phase planes (sh·sw, C, Hh, Wh, B)."""
    Hh, Wh = -(-Hp // sh), -(-Wp // sw)
    out = np.zeros(sh * sw * C * Hh * Wh * B, dtype=x.dtype)
    uB, usw = np.uintp(B), np.uintp(sw)
    for c in range(C):
        for yy in range(Hp):
            py, i = yy % sh, yy // sh
            src0 = np.uintp(((c * Hp + yy) * Wp) * B)
            for px in range(sw):
                n = np.uintp((Wp - px + sw - 1) // sw)  # columns px, px + sw, ... < Wp
                dst = np.uintp(((((py * sw + px) * C + c) * Hh + i) * Wh) * B)
                src = src0 + np.uintp(px * B)
                if B == 1:
                    for j in range(n):
                        out[dst + j] = x[src + j * usw]
                else:
                    for j in range(n):
                        for b in range(uB):
                            out[dst + j * uB + b] = x[src + j * usw * uB + b]
    return out


@jit()
def _tap_table(C: int, kh: int, kw: int, Hh: int, Wh: int, dh: int, dw: int, sh: int, sw: int,
               B: int) -> Any:
    """:func:`_tap_base` of every weight column, once per call: the channel loops then do
    no integer division (six per tap: LeNet-5's conv2 ran 2.1x slower with them)."""
    khw = kh * kw
    tbl = np.empty(C * khw, dtype=np.uintp)
    for col in range(C * khw):
        tbl[col] = _tap_base(col, khw, kw, C, Hh, Wh, dh, dw, sh, sw, B)
    return tbl


@jit()
def _conv_channel(o: int, sp: Any, ent: Any, cb: Any, vals: Any, mode: int, esh: int, nseg: int,
                  x: Any, y: Any, tbl: Any, C: int, Wh: int, OH: int, OW: int, khw: int, B: int,
                  scale: Any, shift: Any, act: int) -> None:
    """Output channel ``o`` of a direct sparse convolution over the phase planes ``x``.

    Each non-zero adds ``w ·`` one contiguous slice of ``x`` to a "wide" accumulator whose
    rows have the plane's width ``Wh`` (the extra columns are discarded), four taps per
    pass over the accumulator (as :func:`_axpy` does).
    """
    out = y[o * OH * OW * B:(o + 1) * OH * OW * B]
    L = ((OH - 1) * Wh + OW) * B
    uL = np.uintp(L)
    acc = np.zeros(L, dtype=x.dtype)
    if mode == 2:
        for col in range(C * khw):
            w = vals[o * C * khw + col]
            b0 = tbl[col]
            for j in range(uL):
                acc[j] += w * x[b0 + j]
    else:
        mask = (1 << esh) - 1
        for s in range(nseg):
            p = o * nseg + s
            e, end = sp[p], sp[p + 1]
            sb = s << esh
            while e + 4 <= end:
                v0, v1, v2, v3 = np.intp(ent[e]), np.intp(ent[e + 1]), np.intp(ent[e + 2]), np.intp(ent[e + 3])
                if mode == 0:
                    w0, w1, w2, w3 = cb[v0 >> esh], cb[v1 >> esh], cb[v2 >> esh], cb[v3 >> esh]
                else:
                    w0, w1, w2, w3 = vals[e], vals[e + 1], vals[e + 2], vals[e + 3]
                b0 = tbl[sb + (v0 & mask)]
                b1 = tbl[sb + (v1 & mask)]
                b2 = tbl[sb + (v2 & mask)]
                b3 = tbl[sb + (v3 & mask)]
                x0, x1, x2, x3 = x[b0:b0 + uL], x[b1:b1 + uL], x[b2:b2 + uL], x[b3:b3 + uL]
                for j in range(uL):
                    acc[j] += (w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])
                e += 4
            while e < end:
                v = np.intp(ent[e])
                w = cb[v >> esh] if mode == 0 else vals[e]
                b0 = tbl[sb + (v & mask)]
                for j in range(uL):
                    acc[j] += w * x[b0 + j]
                e += 1
    for oy in range(OH):
        finish(out, oy * OW * B, acc, oy * Wh * B, OW * B, o, scale, shift, act)


@jit(parallel=True)
def _conv_par(sp: Any, ent: Any, cb: Any, vals: Any, mode: int, esh: int, nseg: int, x: Any,
              y: Any, tbl: Any, O: int, C: int, Wh: int, OH: int, OW: int, khw: int,  # noqa: E741
              B: int, scale: Any, shift: Any, act: int) -> None:
    for o in prange(O):
        _conv_channel(o, sp, ent, cb, vals, mode, esh, nseg, x, y, tbl, C, Wh, OH, OW, khw, B,
                      scale, shift, act)


@jit()
def conv2d(sp: Any, ent: Any, cb: Any, vals: Any, mode: int, esh: int, nseg: int, x: Any, y: Any,
           O: int, C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int, sh: int,  # noqa: E741
           sw: int, dh: int, dw: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    """Direct sparse Conv2d: ``x`` (C, Hp, Wp, B) already padded -> ``y`` (O, OH, OW, B).

    ``esh`` is the entries' column bits (``colbits``), ``sh``/``sw`` the strides. A strided
    convolution first splits its input into phase planes (:func:`_phases`), so that every
    tap is one contiguous, vectorised run as in the stride-1 case, not a strided read.
    """
    if sh == 1 and sw == 1:
        xs, Hh, Wh = x, Hp, Wp
    else:
        xs, Hh, Wh = _phases(x, C, Hp, Wp, sh, sw, B), -(-Hp // sh), -(-Wp // sw)
    tbl = _tap_table(C, kh, kw, Hh, Wh, dh, dw, sh, sw, B)
    if nt > 1:
        _conv_par(sp, ent, cb, vals, mode, esh, nseg, xs, y, tbl, O, C, Wh, OH, OW, kh * kw, B,
                  scale, shift, act)
    else:
        for o in range(O):
            _conv_channel(o, sp, ent, cb, vals, mode, esh, nseg, xs, y, tbl, C, Wh, OH, OW, kh * kw,
                          B, scale, shift, act)
