"""Boundary checks for patches, pooling, DrLIM and DeepSC: each failure names the argument."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._validation import InvalidInputError

__all__ = ["InvalidInputError", "as_tensor", "check_positive", "check_int"]


def as_tensor(x: Any, name: str, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """``x`` as a float32 CPU tensor with ``ndim`` dimensions and only finite values.

    Raises
    ------
    InvalidInputError
        Naming ``name`` when ``x`` has the wrong number of dimensions, is empty or holds NaN/inf.
    """
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float32)
    else:
        try:
            t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name}: cannot convert to a float array ({exc})") from None
    if t.ndim not in dims:
        want = " or ".join(str(d) for d in dims)
        raise InvalidInputError(
            f"{name}: expected {want} dimensions, got {t.ndim} (shape {tuple(t.shape)})"
        )
    if t.numel() == 0:
        raise InvalidInputError(f"{name}: empty array of shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InvalidInputError(f"{name}: {bad} NaN or infinite values; expected finite numbers")
    return t


def check_positive(value: float, name: str) -> float:
    """``value`` as a float if it is finite and > 0, else InvalidInputError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}={value!r}: expected a number > 0") from None
    if not (v > 0 and math.isfinite(v)):
        raise InvalidInputError(f"{name}={value!r}: expected a finite number > 0")
    return v


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else InvalidInputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)
