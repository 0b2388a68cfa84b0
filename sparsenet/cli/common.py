"""Shared CLI plumbing: output (text or ``--json``), spec parsing, argparse types.

Models are loaded with :func:`sparsenet.sources.load_model_source` (files through
:func:`sparsenet.load`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from ..errors import SpecError
from ..pipeline.checks import MAX_SEED

__all__ = [
    "add_output_args",
    "emit",
    "json_safe",
    "parse_assignments",
    "add_weights_arg",
    "positive_int",
    "nonneg_int",
    "seed_int",
    "positive_float",
    "nonneg_float",
    "confidence_float",
    "duration",
    "input_shape",
    "positive_ints",
]


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--json`` and ``--quiet``, which every command takes."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or status lines")


def emit(args: argparse.Namespace, result: dict[str, Any], text: str | Callable[[], str]) -> None:
    """Print ``result`` as JSON if ``--json``, else the human ``text``."""
    if getattr(args, "json", False):
        # NaN/inf (a diverged loss) are not JSON: they are printed as null.
        json.dump(json_safe(result), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(text() if callable(text) else text)


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None and numpy/other values made plain."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return json_safe(_json_default(obj))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def parse_assignments(
    spec: str, convert: Callable[[str], Any] = float, what: str = "NAME=VALUE"
) -> dict[str, Any]:
    """Parse ``"fc1=0.9,fc2=0.8"`` into ``{"fc1": 0.9, "fc2": 0.8}``; SpecError on bad input."""
    out: dict[str, Any] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SpecError(f"bad spec {spec!r}: {part!r} is not of the form {what}[,{what}...]")
        try:
            out[key.strip()] = convert(value.strip())
        except ValueError:
            raise SpecError(
                f"bad spec {spec!r}: value {value.strip()!r} of {key.strip()!r} is not valid ({what})"
            ) from None
    if not out:
        raise SpecError(f"empty spec {spec!r}; expected {what}[,{what}...]")
    return out


def _typed(
    cast: Callable[[str], Any], ok: Callable[[Any], bool], expected: str
) -> Callable[[str], Any]:
    def conv(text: str) -> Any:
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        return v

    return conv


positive_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _typed(
    float, lambda v: v > 0 and v == v and v != float("inf"), "a finite number > 0"
)
seed_int = _typed(
    int, lambda v: 0 <= v <= MAX_SEED, f"a seed, an integer in [0, {MAX_SEED}]"
)
nonneg_float = _typed(
    float, lambda v: v >= 0 and v == v and v != float("inf"), "a finite number >= 0"
)
confidence_float = _typed(float, lambda v: 0.5 <= v < 1, "a probability in [0.5, 1)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:], None)
    return float(t[:-1] if unit else t) * (unit or 1.0)


duration = _typed(_seconds, lambda v: v > 0 and v == v and v != float("inf"),
                  "a duration > 0 such as 90s, 30m, 1.5h or 600 (seconds)")


def add_weights_arg(p: argparse.ArgumentParser) -> None:
    """``--weights``: a state dict for a MODEL given as a registry name or module:factory."""
    p.add_argument(
        "--weights",
        metavar="STATE_DICT.pt",
        help="with MODEL = a registry name or package.module:factory: a torch.save'd state "
        "dict (read weights-only)",
    )


def positive_ints(flag: str, example: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse type for ``flag`` taking comma-separated positive integers (e.g.
    ``example``); a bad value gets one line naming it and what was expected."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            out = tuple(int(t) for t in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {flag} {text!r}; expected e.g. {example}") from None
        if not out or any(s < 1 for s in out):
            raise argparse.ArgumentTypeError(f"bad {flag} {text!r}; expected positive sizes")
        return out

    return parse


# argparse type of ``--input-shape C,H,W``
input_shape = positive_ints("--input-shape", "1,28,28")
