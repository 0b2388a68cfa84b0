"""Old argument names that still work for a release, with a :class:`DeprecationWarning`.

Issue 19 renamed the bit widths: ``bits`` (the shared-weight index width) is now
``weight_bits`` and ``index_bits`` (the sparse index's gap width) is now ``gap_bits``, in
the Python API, the CLI and recipes. The ``.snn`` header keeps its field names (``bits``,
``index_bits``), so files are byte-identical to before.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

from .errors import SpecError

__all__ = ["renamed_argument"]

T = TypeVar("T")


def renamed_argument(where: str, new: str, new_value: T, old: str, old_value: Any) -> T:
    """``new_value``, or ``old_value`` (with a DeprecationWarning) when only the old name was given.

    Raises
    ------
    SpecError
        Both names were given.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise SpecError(f"{where}: {old}= is the old name of {new}=; got both, expected only {new}=")
    warnings.warn(f"{where}({old}=...) is deprecated; use {new}=", DeprecationWarning, stacklevel=3)
    return old_value  # type: ignore[no-any-return]
