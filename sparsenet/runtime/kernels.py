# mypy: ignore-errors
# (numba-compiled code: scalar types are numba's, not numpy's stubs)
"""The engine that runs a whole plan in one compiled call, and its non-weighted kernels.

Activations are stored *feature-major, batch-last*: a ``(B, C, H, W)`` tensor is the flat
array of ``(C, H, W, B)``, so ``Flatten`` is free and every per-weight update is a
contiguous run over the batch (and, for convolutions, over whole rows of the map). The
weighted kernels (sparse Linear and Conv2d) are in :mod:`.sparse_kernels`.

:func:`run_plan` interprets a plan: an int64 table with one row per step, whose weight and
parameter arrays are given by address (the module buffers themselves: nothing is copied),
over one preallocated float arena. ``nt`` > 1 spreads rows / output channels over that many
of numba's threads (the caller sets ``numba.set_num_threads``). Input and output are
addressed too (``x``/``out`` are the data pointers of the caller's torch tensors), so a call
passes only integers and two arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .jitbase import ACTS, finish, jit, view
from .sparse_kernels import conv2d, linear

__all__ = [
    "OP_LOAD", "OP_STORE", "OP_LINEAR", "OP_CONV", "OP_POOL", "OP_ADAPTIVE_AVG", "OP_AFFINE",
    "OP_ADD", "OP_ACT", "OP_PAD", "ACTS", "WIDTH", "linear", "conv2d", "run_plan",
]

# step kinds
OP_LOAD, OP_STORE, OP_LINEAR, OP_CONV, OP_POOL, OP_ADAPTIVE_AVG, OP_AFFINE, OP_ADD, OP_ACT, OP_PAD = range(10)
WIDTH = 32  # int64 fields per step


@jit()
def transpose(x: Any, y: Any, R: int, C: int) -> None:
    """``y`` (C, R) = ``x`` (R, C)ᵀ, flat. Writes run contiguously: for a (64, 784) batch
    this order measured 2.3× faster than contiguous reads, and faster than 16 × 16 tiles."""
    for c in range(C):
        for r in range(R):
            y[c * R + r] = x[r * C + c]


@jit()
def pad2d(x: Any, y: Any, C: int, H: int, W: int, ph: int, pw: int, B: int, value: float) -> None:
    """``x`` (C, H, W, B) -> ``y`` (C, H+2ph, W+2pw, B) with a border of ``value``."""
    Hp, Wp = H + 2 * ph, W + 2 * pw
    y[:] = value
    n = np.uintp(W * B)
    for c in range(C):
        for h in range(H):
            src = np.uintp(((c * H + h) * W) * B)
            dst = np.uintp(((c * Hp + h + ph) * Wp + pw) * B)
            for j in range(n):  # unsigned: no wraparound check, a plain vectorised copy
                y[dst + j] = x[src + j]


@jit()
def pool2d(x: Any, y: Any, C: int, Hp: int, Wp: int, OH: int, OW: int, kh: int, kw: int,
           sh: int, sw: int, B: int, is_max: bool, divisor: float, act: int) -> None:
    """Max / average pooling of the padded ``x`` (C, Hp, Wp, B) -> ``y`` (C, OH, OW, B).

    A NaN in a max-pooling window wins, as in torch. Batch 1 keeps each window's result in
    a register (unsigned indices); larger batches run each window over the batch.
    """
    if B == 1:
        uWp = np.uintp(Wp)
        zero = np.zeros(1, dtype=x.dtype)[0]
        for c in range(C):
            for oy in range(OH):
                o = np.uintp((c * OH + oy) * OW)
                for ox in range(OW):
                    base = np.uintp((c * Hp + oy * sh) * Wp + ox * sw)
                    m = x[base] if is_max else zero
                    for ky in range(np.uintp(kh)):
                        row = base + ky * uWp
                        for kx in range(np.uintp(kw)):
                            v = x[row + kx]
                            if is_max:
                                if v > m or v != v:
                                    m = v
                            else:
                                m += v
                    y[o + np.uintp(ox)] = m if is_max else m / divisor
    else:
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
        finish(y, 0, y, 0, y.shape[0], 0, y[:0], y[:0], act)


@jit()
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


@jit()
def affine(x: Any, y: Any, C: int, inner: int, scale: Any, shift: Any, act: int) -> None:
    """Per-channel ``y = act(x · scale[c] + shift[c])``; ``inner`` = H·W·B values per channel."""
    for c in range(C):
        finish(y, c * inner, x, c * inner, inner, c, scale, shift, act)


@jit()
def add(a: Any, b: Any, y: Any, act: int) -> None:
    for j in range(y.shape[0]):
        y[j] = a[j] + b[j]
    if act:
        finish(y, 0, y, 0, y.shape[0], 0, y[:0], y[:0], act)


@jit()
def activation(x: Any, y: Any, act: int) -> None:
    finish(y, 0, x, 0, y.shape[0], 0, x[:0], x[:0], act)


@jit()
def run_plan(prog: Any, lo: int, hi: int, xaddr: int, outaddr: int, arena: Any, B: int, nt: int,
             u16: Any, i32: Any) -> None:
    """Run steps ``prog[lo:hi]`` over ``arena``; ``x`` (B, F) in, ``out`` (B, N) out.

    ``xaddr``/``outaddr`` address C-contiguous arrays of the arena's dtype (F and N are in
    the load and store steps). ``u16``/``i32`` are empty arrays that only give the dtypes of
    the addressed weight arrays; float arrays have the arena's dtype. Offsets in ``prog`` are
    in features; × B in the arena.
    """
    empty = arena[:0]
    for s in range(lo, hi):
        p = prog[s]
        op, act, src, dst, src2 = p[0], p[1], p[2] * B, p[3] * B, p[4] * B
        if op == OP_LOAD:  # x (B, F) -> arena (F, B)
            F = p[17]
            transpose(view(xaddr, B * F, arena), arena[dst:dst + F * B], B, F)
        elif op == OP_STORE:  # arena (F, B) -> out (B, F)
            F = p[17]
            out = view(outaddr, B * F, arena)
            for b in range(B):
                for f in range(F):
                    out[b * F + f] = arena[src + f * B + b]
        elif op == OP_LINEAR or op == OP_CONV:
            mode, N, K, ne, k, nseg = p[5], p[13], p[14], p[15], p[16], p[29]
            spp = view(p[6], N * nseg + 1, i32) if mode != 2 else i32
            ent = view(p[7], ne, u16) if mode != 2 else u16
            cb = view(p[9], k, arena) if mode == 0 else empty
            nv = ne if mode == 1 else N * K
            vals = view(p[10], nv, arena) if mode != 0 else empty
            scale = view(p[11], N, arena) if p[11] else empty
            shift = view(p[12], N, arena) if p[12] else empty
            if op == OP_LINEAR:
                linear(spp, ent, cb, vals, mode, p[8], nseg, arena[src:src + K * B],
                       arena[dst:dst + N * B], N, K, B, scale, shift, act, nt)
            else:
                C, Hp, Wp, OH, OW = p[17], p[18], p[19], p[20], p[21]
                conv2d(spp, ent, cb, vals, mode, p[8], nseg, arena[src:src + C * Hp * Wp * B],
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
            scale = view(p[11], C, arena) if p[11] else empty
            shift = view(p[12], C, arena) if p[12] else empty
            affine(arena[src:src + C * inner * B], arena[dst:dst + C * inner * B], C, inner * B,
                   scale, shift, act)
        elif op == OP_ADD:
            n = p[17] * B
            add(arena[src:src + n], arena[src2:src2 + n], arena[dst:dst + n], act)
        elif op == OP_ACT:
            n = p[17] * B
            activation(arena[src:src + n], arena[dst:dst + n], act)
