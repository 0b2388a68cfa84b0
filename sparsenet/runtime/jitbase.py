# mypy: ignore-errors
# (numba-compiled code: scalar types are numba's, not numpy's stubs)
"""Building blocks of the runtime's numba kernels: compilation, raw views, epilogues.

Every kernel is compiled with ``cache=True`` (on disk, next to this file or in numba's
user-wide cache), so a new process loads the machine code instead of compiling it; where no
cache location is writable, they are compiled once per process.

The epilogue of every weighted op is ``y = act(acc · scale[i] + shift[i])``: bias, and an
eval-mode BatchNorm folded at plan time, then an activation (codes in :data:`ACTS`).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

__all__ = ["ACTS", "jit", "view", "apply_act", "finish", "finish_rows"]

# activation codes
ACTS = {"none": 0, "relu": 1, "gelu": 2, "tanh": 3, "sigmoid": 4, "gelu_tanh": 5}


def jit(**options: Any) -> Any:
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


@jit(inline="always")
def view(addr: int, n: int, like: Any) -> Any:
    return numba.carray(_ptr(addr, like), n)


@jit(inline="always")
def apply_act(v: Any, act: int) -> Any:
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


@jit()
def finish(y: Any, d0: int, a: Any, s0: int, n: int, i: int, scale: Any, shift: Any,
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
            y[d0 + j] = apply_act(a[s0 + j] * s + t, act)


@jit()
def finish_rows(y: Any, i0: int, i1: int, scale: Any, shift: Any, act: int) -> None:
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
            y[i] = apply_act(y[i], act)
