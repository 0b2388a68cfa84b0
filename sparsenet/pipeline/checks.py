"""Value checkers for recipe keys: each maps ``(value, key path)`` to a normalised value or
raises :class:`RecipeError` naming the key path, what was expected and what was given."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ..errors import SparsenetError, SpecError
from ..layers import MAX_BITS, MIN_BITS, parse_bits_spec

__all__ = [
    "RecipeError",
    "MAX_SEED",
    "Check",
    "number",
    "integer",
    "choice",
    "boolean",
    "string",
    "string_list",
    "per_layer",
    "parse_bits",
    "index_bits_spec",
    "rank_spec",
    "pattern_spec",
    "fail",
]


class RecipeError(SparsenetError):
    """A recipe has an unknown key, a missing key or a bad value (the message names its path)."""


# Seeds feed torch.manual_seed after (seed * STAGE_SEED_STRIDE + stage) * 1_000_003 + epoch *
# 1009 (stages.STAGE_SEED_STRIDE = 1000), which must stay below 2**64: seeds are 32-bit.
MAX_SEED = 2**32 - 1

Check = Callable[[Any, str], Any]  # (value, key path) -> normalised value, or raise RecipeError

def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def fail(path: str, expected: str, value: Any) -> RecipeError:
    return RecipeError(f"{path}: expected {expected}, got {_fmt(value)}")


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> Check:
    """A finite int or float within the given (open or closed) bounds."""
    if lo is not None and hi is not None:
        what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        what = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        what = "a finite number"

    def check(v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise fail(path, what, v)
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise fail(path, what, v)
        if hi is not None and (v >= hi if hi_open else v > hi):
            raise fail(path, what, v)
        return float(v)

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    what = "an integer" + (f" >= {lo}" if lo is not None and hi is None else "")
    if lo is not None and hi is not None:
        what = f"an integer in [{lo}, {hi}]"

    def check(v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(path, what, v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise fail(path, what, v)
        return v

    return check


def choice(*options: str) -> Check:
    what = "one of " + ", ".join(repr(o) for o in options)

    def check(v: Any, path: str) -> str:
        if v not in options:
            raise fail(path, what, v)
        return str(v)

    return check


def boolean(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise fail(path, "true or false", v)
    return v


def string(v: Any, path: str) -> str:
    if not isinstance(v, str) or not v:
        raise fail(path, "a non-empty string", v)
    return v


def string_list(v: Any, path: str) -> list[str]:
    if not isinstance(v, list) or not v:
        raise fail(path, "a non-empty list of layer names", v)
    return [string(x, f"{path}[{i}]") for i, x in enumerate(v)]


def per_layer(value: Check) -> Check:
    """A table ``{layer_name = value, ...}`` with each value checked by ``value``."""

    def check(v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict) or not v:
            raise fail(path, "a table of layer = value", v)
        return {str(k): value(x, f"{path}.{k}") for k, x in v.items()}

    return check


def parse_bits(v: Any, path: str = "bits") -> dict[str, int]:
    """Bits per tensor: an int (every tensor: ``{"all": n}``), ``"conv=8,fc=5,fc3=6"`` or a
    table of the same (:func:`sparsenet.layers.parse_bits_spec`: keys are groups ``fc``,
    ``conv``, ``embedding``, ``attention``, ``all``, tensor names or globs).

    Returns the table form, e.g. ``{"conv": 8, "fc": 5}``.
    """
    bits = integer(MIN_BITS, MAX_BITS)
    if isinstance(v, int) and not isinstance(v, bool):
        return {"all": bits(v, path)}
    if isinstance(v, str):
        try:
            return parse_bits_spec(v)
        except SpecError:
            raise fail(
                path, f"NAME=BITS[,NAME=BITS...] such as 'conv=8,fc=5' with bits in "
                f"[{MIN_BITS}, {MAX_BITS}]", v
            ) from None
    if isinstance(v, dict) and v:
        return {str(k): bits(x, f"{path}.{k}") for k, x in v.items()}
    raise fail(path, "bits as an integer, 'conv=8,fc=5' or a table", v)


def index_bits_spec(v: Any, path: str) -> str | dict[str, int]:
    """Sparse-index gap bits: ``"auto"`` (the smallest file per layer) or :func:`parse_bits`."""
    if v == "auto":
        return "auto"
    try:
        return parse_bits(v, path)
    except RecipeError:
        raise fail(path, "'auto', bits as an integer, 'conv=8,fc=5' or a table", v) from None


def rank_spec(v: Any, path: str) -> int | dict[str, int]:
    if isinstance(v, dict):
        return per_layer(integer(1))(v, path)
    return integer(1)(v, path)


def pattern_spec(v: Any, path: str) -> str:
    """A sparsity pattern: ``"unstructured"`` or ``"N:M"`` with ``0 < N < M``; normalised."""
    from ..prune.patterns import parse_pattern

    if not isinstance(v, str):
        raise fail(path, "'unstructured' or an N:M pattern like '2:4'", v)
    try:
        pat = parse_pattern(v)
    except SparsenetError:
        raise fail(path, "'unstructured' or an N:M pattern with integers 0 < N < M", v) from None
    return "unstructured" if pat is None else str(pat)
