# mypy: ignore-errors
# (numba-compiled code: scalar types are numba's, not numpy's stubs)
"""numba kernels of the sparse runtime, and the engine that runs a whole plan in one call.

Activations are stored *feature-major, batch-last*: a ``(B, C, H, W)`` tensor is the flat
array of ``(C, H, W, B)``, so ``Flatten`` is free and every per-weight update is a
contiguous run over the batch (and, for convolutions, over whole rows of the map).

Weights are in the compact form of :mod:`.compact`: per output row, uint8 column deltas and
uint8 codebook indices (or float values), decoded on the fly.

* Linear, batch 1: one dot product per row with four partial sums (so the adds do not form
  one dependency chain). Batch > 1: per row, ``acc[:] += w · x[col, :]`` over the batch.
* Conv2d: direct sparse convolution. For stride 1 each non-zero ``(c, ky, kx)`` adds
  ``w ·`` one contiguous slice of the (padded) input to a "wide" accumulator whose rows have
  the padded input's width (the extra columns are discarded), one long vectorised loop per
  non-zero; other strides loop over output rows.
* Epilogue of every weighted op: ``y = acc · scale[i] + shift[i]`` (bias, and an eval-mode
  BatchNorm folded at plan time), then an activation.

:func:`run_plan` interprets a plan: an int64 table with one row per step, whose weight and
parameter arrays are given by address (the module buffers themselves: nothing is copied),
over one preallocated float arena. ``nt`` > 1 spreads rows / output channels over that many
of numba's threads (the caller sets ``numba.set_num_threads``).

Every kernel is compiled with ``cache=True`` (on disk, next to this file or in numba's
user-wide cache), so a new process loads the machine code instead of compiling it; where no
cache location is writable, they are compiled once per process.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange
from numba.core import types
from numba.extending import intrinsic

__all__ = [
    "OP_LOAD", "OP_STORE", "OP_LINEAR", "OP_CONV", "OP_POOL", "OP_ADAPTIVE_AVG", "OP_AFFINE",
    "OP_ADD", "OP_ACT", "OP_PAD", "ACTS", "WIDTH", "linear", "conv2d", "run_plan",
]

# activation codes
ACTS = {"none": 0, "relu": 1, "gelu": 2, "tanh": 3, "sigmoid": 4, "gelu_tanh": 5}
# step kinds
OP_LOAD, OP_STORE, OP_LINEAR, OP_CONV, OP_POOL, OP_ADAPTIVE_AVG, OP_AFFINE, OP_ADD, OP_ACT, OP_PAD = range(10)
WIDTH = 32  # int64 fields per step


def _jit(**options: Any) -> Any:
    def wrap(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # no writable cache location (read-only install)
            return numba.njit(cache=False, **options)(fn)

    return wrap


@intrinsic
def _ptr(typingctx: Any, addr: Any, like: Any) -> Any:
    """``addr`` (an int) as a pointer to ``like``'s dtype."""
    if not isinstance(like, types.Array):
        return None
    sig = types.CPointer(like.dtype)(types.intp, like)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@_jit(inline="always")
def _view(addr: int, n: int, like: Any) -> Any:
    return numba.carray(_ptr(addr, like), n)


@_jit(inline="always")
def _act(v: Any, act: int) -> Any:
    if act == 1:
        return v if v > 0 else v * 0
    if act == 2:
        return 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    if act == 3:
        return math.tanh(v)
    if act == 4:
        return 1.0 / (1.0 + math.exp(-v))
    if act == 5:
        return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    return v


@_jit()
def _finish(y: Any, d0: int, a: Any, s0: int, n: int, i: int, scale: Any, shift: Any,
            act: int) -> None:
    """``y[d0:d0+n] = act(a[s0:s0+n] · scale[i] + shift[i])`` (scale/shift may be empty).

    The branches sit outside the loops so that each loop is a plain vectorisable one.
    """
    s = np.float64(scale[i]) if scale.shape[0] else 1.0
    t = np.float64(shift[i]) if shift.shape[0] else 0.0
    if act == 0:
        if s == 1.0:
            for j in range(n):
                y[d0 + j] = a[s0 + j] + t
        else:
            for j in range(n):
                y[d0 + j] = a[s0 + j] * s + t
    elif act == 1:
        for j in range(n):
            v = a[s0 + j] * s + t
            y[d0 + j] = v if not v <= 0 else 0.0
    else:
        for j in range(n):
            y[d0 + j] = _act(a[s0 + j] * s + t, act)


@_jit()
def _finish_rows(y: Any, i0: int, i1: int, scale: Any, shift: Any, act: int) -> None:
    """Batch-1 epilogue ``y[i] = act(y[i] · scale[i] + shift[i])`` for rows i0..i1."""
    if scale.shape[0]:
        for i in range(i0, i1):
            y[i] *= scale[i]
    if shift.shape[0]:
        for i in range(i0, i1):
            y[i] += shift[i]
    if act == 1:
        for i in range(i0, i1):
            v = y[i]
            y[i] = v if not v <= 0 else 0.0
    elif act:
        for i in range(i0, i1):
            y[i] = _act(y[i], act)


@_jit(inline="always")
def _dot_row(i: int, rp: Any, dl: Any, w8: Any, cb: Any, x: Any, z: Any) -> Any:
    """Row ``i`` of the compact weight times the vector ``x`` (batch 1), four partial sums.

    The weight of entry ``e`` is ``cb[w8[e]]``: codebook mode passes (codes, codebook),
    value mode passes (arange-like identity is avoided: see :func:`_dot_row_vals`).
    ``z`` is a zero of the accumulator dtype (the input's).
    """
    a0, a1, a2, a3 = z, z, z, z
    col = np.intp(-1)
    e = np.intp(rp[i])
    end = np.intp(rp[i + 1])
    while e + 4 <= end:
        d0, d1, d2, d3 = np.intp(dl[e]), np.intp(dl[e + 1]), np.intp(dl[e + 2]), np.intp(dl[e + 3])
        if d0 == 0 or d1 == 0 or d2 == 0 or d3 == 0:
            break
        c0 = col + d0
        c1 = c0 + d1
        c2 = c1 + d2
        c3 = c2 + d3
        a0 += cb[w8[e]] * x[c0]
        a1 += cb[w8[e + 1]] * x[c1]
        a2 += cb[w8[e + 2]] * x[c2]
        a3 += cb[w8[e + 3]] * x[c3]
        col = c3
        e += 4
    while e < end:
        d = np.intp(dl[e])
        if d == 0:
            col += 255
        else:
            col += d
            a0 += cb[w8[e]] * x[col]
        e += 1
    return (a0 + a1) + (a2 + a3)


@_jit(inline="always")
def _dot_row_vals(i: int, rp: Any, dl: Any, vals: Any, x: Any, z: Any) -> Any:
    """As :func:`_dot_row` with a value per entry (fillers hold 0)."""
    a0, a1 = z, z
    col = np.intp(-1)
    e = np.intp(rp[i])
    end = np.intp(rp[i + 1])
    while e + 2 <= end:
        d0, d1 = np.intp(dl[e]), np.intp(dl[e + 1])
        c0 = col + (d0 if d0 else 255)
        c1 = c0 + (d1 if d1 else 255)
        a0 += vals[e] * x[c0]
        a1 += vals[e + 1] * x[c1]
        col = c1
        e += 2
    if e < end:
        d = np.intp(dl[e])
        col += d if d else 255
        a0 += vals[e] * x[col]
    return a0 + a1


@_jit(inline="always")
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


@_jit(inline="always")
def _axpy_row(i: int, rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any,
              acc: Any, K: int, B: int) -> None:
    """``acc[0:B] += Σ_e w_e · x[col_e, 0:B]`` over row ``i`` (x is (K, B) flat)."""
    if mode == 2:
        base = i * K
        for j in range(K):
            w = vals[base + j]
            xo = j * B
            for b in range(B):
                acc[b] += w * x[xo + b]
        return
    col = np.intp(-1)
    for e in range(rp[i], rp[i + 1]):
        d = np.intp(dl[e])
        if d == 0:
            col += 255
            continue
        col += d
        w = cb[cd[e]] if mode == 0 else vals[e]
        xo = col * B
        for b in range(B):
            acc[b] += w * x[xo + b]


@_jit()
def _linear_rows(i0: int, i1: int, rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int,
                 x: Any, y: Any, K: int, B: int, scale: Any, shift: Any, act: int) -> None:
    z = np.zeros(1, dtype=x.dtype)[0]
    if B == 1:
        if mode == 0:
            for i in range(i0, i1):
                y[i] = _dot_row(i, rp, dl, cd, cb, x, z)
        elif mode == 1:
            for i in range(i0, i1):
                y[i] = _dot_row_vals(i, rp, dl, vals, x, z)
        else:
            for i in range(i0, i1):
                y[i] = _dot_dense(i, vals, x, z)
        _finish_rows(y, i0, i1, scale, shift, act)
        return
    for i in range(i0, i1):
        if True:
            acc = y[i * B:(i + 1) * B]
            acc[:] = 0
            _axpy_row(i, rp, dl, cd, cb, vals, mode, x, acc, K, B)
            _finish(acc, 0, acc, 0, B, i, scale, shift, act)


@_jit(parallel=True)
def _linear_par(rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any, y: Any,
                N: int, K: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    per = (N + nt - 1) // nt
    for t in prange(nt):
        _linear_rows(t * per, min(N, (t + 1) * per), rp, dl, cd, cb, vals, mode, x, y, K, B,
                     scale, shift, act)


@_jit()
def linear(rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any, y: Any, N: int,
           K: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    """``y (N, B) = act(scale · (W x) + shift)`` for ``x (K, B)``, flat batch-last arrays.

    ``mode`` 0: codebook (``cd``, ``cb``); 1: a value per entry (``vals``); 2: dense
    row-major ``vals`` (N·K). ``scale``/``shift`` (N,) or empty.
    """
    if nt > 1:
        _linear_par(rp, dl, cd, cb, vals, mode, x, y, N, K, B, scale, shift, act, nt)
    else:
        _linear_rows(0, N, rp, dl, cd, cb, vals, mode, x, y, K, B, scale, shift, act)


@_jit()
def _conv_channel(o: int, rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any,
                  y: Any, C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int, sh: int,
                  sw: int, dh: int, dw: int, B: int, scale: Any, shift: Any, act: int) -> None:
    """Output channel ``o`` of a direct sparse convolution over the padded input ``x``."""
    khw = kh * kw
    out = y[o * OH * OW * B:(o + 1) * OH * OW * B]
    if sh == 1 and sw == 1:
        L = ((OH - 1) * Wp + OW) * B
        acc = np.zeros(L, dtype=x.dtype)
    else:
        acc = np.zeros(OH * OW * B, dtype=x.dtype)
        L = 0
    col = np.intp(-1)
    e = np.intp(rp[o]) if mode != 2 else 0
    end = np.intp(rp[o + 1]) if mode != 2 else C * khw
    while e < end:
        if mode == 2:
            col = e
            w = vals[o * C * khw + e]
        else:
            d = np.intp(dl[e])
            if d == 0:
                col += 255
                e += 1
                continue
            col += d
            w = cb[cd[e]] if mode == 0 else vals[e]
        e += 1
        c = col // khw
        r = col - c * khw
        ky = r // kw
        kx = r - ky * kw
        if L:
            base = ((c * Hp + ky * dh) * Wp + kx * dw) * B
            for j in range(L):
                acc[j] += w * x[base + j]
        else:
            for oy in range(OH):
                row = ((c * Hp + oy * sh + ky * dh) * Wp + kx * dw) * B
                ob = oy * OW * B
                for ox in range(OW):
                    xo = row + ox * sw * B
                    ao = ob + ox * B
                    for b in range(B):
                        acc[ao + b] += w * x[xo + b]
    if L:
        for oy in range(OH):
            _finish(out, oy * OW * B, acc, oy * Wp * B, OW * B, o, scale, shift, act)
    else:
        _finish(out, 0, acc, 0, OH * OW * B, o, scale, shift, act)


@_jit(parallel=True)
def _conv_par(rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any, y: Any, O: int,  # noqa: E741
              C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int, sh: int, sw: int,
              dh: int, dw: int, B: int, scale: Any, shift: Any, act: int) -> None:
    for o in prange(O):
        _conv_channel(o, rp, dl, cd, cb, vals, mode, x, y, C, Hp, Wp, OH, OW, kh, kw, sh, sw,
                      dh, dw, B, scale, shift, act)


@_jit()
def conv2d(rp: Any, dl: Any, cd: Any, cb: Any, vals: Any, mode: int, x: Any, y: Any, O: int,  # noqa: E741
           C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int, sh: int, sw: int,
           dh: int, dw: int, B: int, scale: Any, shift: Any, act: int, nt: int) -> None:
    """Direct sparse Conv2d: ``x`` (C, Hp, Wp, B) already padded -> ``y`` (O, OH, OW, B)."""
    if nt > 1:
        _conv_par(rp, dl, cd, cb, vals, mode, x, y, O, C, Hp, Wp, OH, OW, kh, kw, sh, sw, dh,
                  dw, B, scale, shift, act)
    else:
        for o in range(O):
            _conv_channel(o, rp, dl, cd, cb, vals, mode, x, y, C, Hp, Wp, OH, OW, kh, kw, sh,
                          sw, dh, dw, B, scale, shift, act)


@_jit()
def pad2d(x: Any, y: Any, C: int, H: int, W: int, ph: int, pw: int, B: int, value: float) -> None:
    """``x`` (C, H, W, B) -> ``y`` (C, H+2ph, W+2pw, B) with a border of ``value``."""
    Hp, Wp = H + 2 * ph, W + 2 * pw
    y[:] = value
    for c in range(C):
        for h in range(H):
            src = ((c * H + h) * W) * B
            dst = ((c * Hp + h + ph) * Wp + pw) * B
            for j in range(W * B):
                y[dst + j] = x[src + j]


@_jit()
def pool2d(x: Any, y: Any, C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int,
           sh: int, sw: int, B: int, is_max: bool, divisor: float, act: int) -> None:
    """Max / average pooling of the padded ``x`` (C, Hp, Wp, B) -> ``y`` (C, OH, OW, B)."""
    for c in range(C):
        for oy in range(OH):
            for ox in range(OW):
                o = ((c * OH + oy) * OW + ox) * B
                for b in range(B):
                    y[o + b] = -np.inf if is_max else 0.0
                for ky in range(kh):
                    row = ((c * Hp + oy * sh + ky) * Wp + ox * sw) * B
                    for kx in range(kw):
                        xo = row + kx * B
                        for b in range(B):
                            v = x[xo + b]
                            if is_max:
                                if v > y[o + b] or v != v:
                                    y[o + b] = v
                            else:
                                y[o + b] += v
                if not is_max:
                    for b in range(B):
                        y[o + b] /= divisor
    if act:
        _finish(y, 0, y, 0, y.shape[0], 0, y[:0], y[:0], act)


@_jit()
def adaptive_avg(x: Any, y: Any, C: int, H: int, W: int, OH: int, OW: int, B: int) -> None:
    """``adaptive_avg_pool2d`` with torch's bins ``[floor(i·H/OH), ceil((i+1)·H/OH))``."""
    for c in range(C):
        for oy in range(OH):
            y0, y1 = (oy * H) // OH, -((-(oy + 1) * H) // OH)
            for ox in range(OW):
                x0, x1 = (ox * W) // OW, -((-(ox + 1) * W) // OW)
                o = ((c * OH + oy) * OW + ox) * B
                for b in range(B):
                    y[o + b] = 0.0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        xo = ((c * H + iy) * W + ix) * B
                        for b in range(B):
                            y[o + b] += x[xo + b]
                n = (y1 - y0) * (x1 - x0)
                for b in range(B):
                    y[o + b] /= n


@_jit()
def affine(x: Any, y: Any, C: int, inner: int, scale: Any, shift: Any, act: int) -> None:
    """Per-channel ``y = act(x · scale[c] + shift[c])``; ``inner`` = H·W·B values per channel."""
    for c in range(C):
        _finish(y, c * inner, x, c * inner, inner, c, scale, shift, act)


@_jit()
def add(a: Any, b: Any, y: Any, act: int) -> None:
    for j in range(y.shape[0]):
        y[j] = a[j] + b[j]
    if act:
        _finish(y, 0, y, 0, y.shape[0], 0, y[:0], y[:0], act)


@_jit()
def activation(x: Any, y: Any, act: int) -> None:
    _finish(y, 0, x, 0, y.shape[0], 0, x[:0], x[:0], act)


@_jit()
def run_plan(prog: Any, lo: int, hi: int, x: Any, out: Any, arena: Any, B: int, nt: int,
             u8: Any, i32: Any) -> None:
    """Run steps ``prog[lo:hi]`` over ``arena``; ``x`` (B, F) in, ``out`` (B, N) out.

    ``u8``/``i32`` are empty arrays that only give the dtypes of the addressed weight arrays;
    float arrays have the arena's dtype. Offsets in ``prog`` are in features; × B in the arena.
    """
    empty = arena[:0]
    for s in range(lo, hi):
        p = prog[s]
        op, act, src, dst, src2 = p[0], p[1], p[2] * B, p[3] * B, p[4] * B
        if op == OP_LOAD:  # x (B, F) -> arena (F, B)
            F = x.shape[1]
            for b in range(B):
                for f in range(F):
                    arena[dst + f * B + b] = x[b, f]
        elif op == OP_STORE:  # arena (F, B) -> out (B, F)
            F = out.shape[1]
            for b in range(B):
                for f in range(F):
                    out[b, f] = arena[src + f * B + b]
        elif op == OP_LINEAR or op == OP_CONV:
            mode, N, K, ne, k = p[5], p[13], p[14], p[15], p[16]
            rp = _view(p[6], N + 1, i32) if mode != 2 else i32
            dl = _view(p[7], ne, u8) if mode != 2 else u8
            cd = _view(p[8], ne, u8) if mode == 0 else u8
            cb = _view(p[9], k, arena) if mode == 0 else empty
            nv = ne if mode == 1 else N * K
            vals = _view(p[10], nv, arena) if mode != 0 else empty
            scale = _view(p[11], N, arena) if p[11] else empty
            shift = _view(p[12], N, arena) if p[12] else empty
            if op == OP_LINEAR:
                linear(rp, dl, cd, cb, vals, mode, arena[src:src + K * B],
                       arena[dst:dst + N * B], N, K, B, scale, shift, act, nt)
            else:
                C, Hp, Wp, OH, OW = p[17], p[18], p[19], p[20], p[21]
                conv2d(rp, dl, cd, cb, vals, mode, arena[src:src + C * Hp * Wp * B],
                       arena[dst:dst + N * OH * OW * B], N, C, Hp, Wp, OH, OW, p[22], p[23],
                       p[24], p[25], p[26], p[27], B, scale, shift, act, nt)
        elif op == OP_PAD:
            C, H, W, ph, pw = p[17], p[18], p[19], p[22], p[23]
            val = -np.inf if p[5] == 1 else 0.0
            pad2d(arena[src:src + C * H * W * B],
                  arena[dst:dst + C * (H + 2 * ph) * (W + 2 * pw) * B], C, H, W, ph, pw, B, val)
        elif op == OP_POOL:
            C, Hp, Wp, OH, OW = p[17], p[18], p[19], p[20], p[21]
            pool2d(arena[src:src + C * Hp * Wp * B], arena[dst:dst + C * OH * OW * B], C, Hp, Wp,
                   OH, OW, p[22], p[23], p[24], p[25], B, p[5] == 1, float(p[28]), act)
        elif op == OP_ADAPTIVE_AVG:
            C, H, W, OH, OW = p[17], p[18], p[19], p[20], p[21]
            adaptive_avg(arena[src:src + C * H * W * B], arena[dst:dst + C * OH * OW * B], C, H, W,
                         OH, OW, B)
        elif op == OP_AFFINE:
            C, inner = p[17], p[18]
            scale = _view(p[11], C, arena) if p[11] else empty
            shift = _view(p[12], C, arena) if p[12] else empty
            affine(arena[src:src + C * inner * B], arena[dst:dst + C * inner * B], C, inner * B,
                   scale, shift, act)
        elif op == OP_ADD:
            n = p[17] * B
            add(arena[src:src + n], arena[src2:src2 + n], arena[dst:dst + n], act)
        elif op == OP_ACT:
            n = p[17] * B
            activation(arena[src:src + n], arena[dst:dst + n], act)
