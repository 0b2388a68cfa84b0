"""Boundary checks shared by the sparse-coding functions and estimators.

Everything here turns user input (numpy arrays, torch tensors, lists) into torch tensors of
one floating dtype on one device, or raises :class:`InvalidInputError` naming the argument.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import SparsenetError

__all__ = ["InvalidInputError", "as_tensor_2d", "check_alpha", "check_positive_int", "to_output"]


class InvalidInputError(SparsenetError, ValueError):
    """Bad input to a sparse-coding function: NaN, wrong shape, mismatched sizes, alpha <= 0."""


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float64


def as_tensor_2d(
    value: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Return ``value`` as a finite 2-D floating tensor, or raise naming ``name``.

    numpy float32/float64 arrays are wrapped without a copy; other numeric input becomes
    float64 (float32/float64 tensors keep their dtype). ``dtype``/``device`` force a target.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach()
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise InvalidInputError(f"{name} must be a 2-D numeric array: {exc}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise InvalidInputError(f"{name} must be a 2-D numeric array, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise InvalidInputError(f"{name} must be real-valued, got dtype {arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InvalidInputError(f"{name} must be real-valued, got dtype {t.dtype}")
    if t.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 2-D with shape (n_samples, n_features), got shape {tuple(t.shape)}"
        )
    t = t.to(dtype=dtype or _float_dtype(t.dtype), device=device)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"{name} contains NaN or infinity; expected finite values")
    return t


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """Return ``alpha`` as a float, raising unless it is a finite number > 0."""
    try:
        value = float(alpha)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a positive number, got {alpha!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {alpha!r}")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int >= 1, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def to_output(codes: torch.Tensor, like: Any) -> Any:
    """Return ``codes`` as the same kind of array as ``like`` (torch tensor or numpy array)."""
    if isinstance(like, torch.Tensor):
        return codes
    return codes.cpu().numpy()
