"""Node arguments of an fx graph <-> JSON.

==============================  ==========================================
Python value                    JSON
==============================  ==========================================
``fx.Node``                     ``{"node": "name"}``
None, bool, int, str            themselves
finite float                    itself; ``inf``/``nan`` as ``{"float": "inf"}``
list                            list
tuple                           ``{"tuple": [...]}``
slice                           ``{"slice": [start, stop, step]}``
``torch.float32`` ...           ``{"dtype": "float32"}``
``...``                         ``{"ellipsis": true}``
dict (string keys)              ``{"dict": {...}}``
==============================  ==========================================

Decoding accepts exactly these shapes (nesting depth <= 16) and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from ..errors import CorruptFileError

__all__ = ["DTYPES", "encode_arg", "decode_arg", "MAX_DEPTH"]

MAX_DEPTH = 16
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}  # fmt: skip
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_INT = 1 << 62


def encode_arg(v: Any, fail: Callable[[str], Exception]) -> Any:
    """JSON form of one node argument; ``fail(reason)`` is raised for anything else."""
    if isinstance(v, fx.Node):
        return {"node": v.name}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, tuple):
        return {"tuple": [encode_arg(x, fail) for x in v]}
    if isinstance(v, list):
        return [encode_arg(x, fail) for x in v]
    if isinstance(v, slice):
        return {"slice": [encode_arg(x, fail) for x in (v.start, v.stop, v.step)]}
    if isinstance(v, torch.dtype) and v in _DTYPE_NAMES:
        return {"dtype": _DTYPE_NAMES[v]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"dict": {k: encode_arg(x, fail) for k, x in v.items()}}
    raise fail(f"argument {str(v)[:60]!r} of type {type(v).__name__} cannot be recorded")


def _bad(what: str) -> CorruptFileError:
    return CorruptFileError(f"graph argument {what[:80]} is not a recordable value")


def decode_arg(j: Any, env: dict[str, fx.Node], depth: int = 0) -> Any:
    """The Python value of a JSON argument; nodes are looked up in ``env`` (earlier nodes)."""
    if depth > MAX_DEPTH:
        raise CorruptFileError(f"graph arguments nested deeper than {MAX_DEPTH}")
    if j is None or isinstance(j, (bool, str)):
        return j
    if isinstance(j, int):
        if abs(j) > _MAX_INT:
            raise _bad(str(j))
        return j
    if isinstance(j, float):
        return j
    if isinstance(j, list):
        return [decode_arg(x, env, depth + 1) for x in j]
    if not isinstance(j, dict) or len(j) != 1:
        raise _bad(repr(j))
    ((key, val),) = j.items()
    if key == "node":
        if not isinstance(val, str) or val not in env:
            raise CorruptFileError(f"graph argument names node {str(val)[:60]!r}, not defined before")
        return env[val]
    if key == "float" and val in ("inf", "-inf", "nan"):
        return float(val)
    if key == "tuple" and isinstance(val, list):
        return tuple(decode_arg(x, env, depth + 1) for x in val)
    if key == "slice" and isinstance(val, list) and len(val) == 3:
        parts = [decode_arg(x, env, depth + 1) for x in val]
        return slice(*parts)
    if key == "dtype" and isinstance(val, str) and val in DTYPES:
        return DTYPES[val]
    if key == "ellipsis" and val is True:
        return Ellipsis
    if key == "dict" and isinstance(val, dict):
        return {k: decode_arg(x, env, depth + 1) for k, x in val.items()}
    raise _bad(repr(j))
