"""Progress bars that switch themselves off when stdout is not a terminal or when quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "bars_enabled", "log"]

T = TypeVar("T")


def bars_enabled(quiet: bool = False) -> bool:
    """True when a progress bar should be drawn: not quiet and stdout is a terminal."""
    return not quiet and sys.stdout.isatty()


def progress(
    iterable: Iterable[T], desc: str = "", total: int | None = None, quiet: bool = False, **kw: Any
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (on stderr) unless bars are disabled."""
    if not bars_enabled(quiet):
        return iter(iterable)
    return iter(tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kw))


def log(message: str, quiet: bool = False) -> None:
    """A status line on stderr (stdout stays clean for ``--json``)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
