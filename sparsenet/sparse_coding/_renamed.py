"""Keyword names renamed to scikit-learn's, still accepted for one release with a warning.

``n_atoms`` → ``n_components``, ``seed`` → ``random_state``, ``positive`` →
``positive_code``. An estimator lists its renames in ``_renamed_params``; its ``__init__``
takes ``**deprecated`` and passes it to :func:`apply_renamed`, and
:class:`RenamedParamsMixin` gives ``set_params`` and model files written with the old names
(:mod:`.persist` calls :meth:`RenamedParamsMixin._upgrade_state`) the same mapping.
``get_params`` shows only the new names.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar

__all__ = ["RenamedParamsMixin", "apply_renamed", "param_defaults"]


def _warn(cls: type, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{cls.__name__}: the parameter {old!r} is deprecated and will be removed in the next "
        f"release; use {new!r} (scikit-learn's name)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def param_defaults(cls: type) -> dict[str, Any]:
    """The defaults of ``cls.__init__``'s parameters (the ``**deprecated`` catch-all left out)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.default is not inspect.Parameter.empty and p.kind != p.VAR_KEYWORD
    }


def apply_renamed(obj: Any, deprecated: dict[str, Any]) -> None:
    """Store the values given under old names (``deprecated``) under the new ones.

    Raises
    ------
    TypeError
        For a keyword that is neither a parameter nor a known old name, or an old name given
        together with a non-default value of its new name.
    """
    cls = type(obj)
    renames: dict[str, str] = cls._renamed_params
    defaults = param_defaults(cls)
    for old in deprecated:
        if old not in renames:
            raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument {old!r}")
    mapped = obj._map_renamed(dict(deprecated))
    for old in deprecated:
        _warn(cls, old, renames[old], stacklevel=4)
    for new, value in mapped.items():
        current = getattr(obj, new)
        if current is not defaults[new] and not _same(current, defaults[new]):
            raise TypeError(
                f"{cls.__name__}.__init__() got both {new!r} and its deprecated name; pass "
                f"only {new!r}"
            )
        setattr(obj, new, value)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and the like: only identity counts as "not given"
        return False


class RenamedParamsMixin:
    """``set_params`` and file loading that accept the deprecated parameter names."""

    _renamed_params: ClassVar[dict[str, str]] = {}

    def _map_renamed(self, given: dict[str, Any]) -> dict[str, Any]:
        """Old-name values → new-name values (a hook for renames that move other values)."""
        return {self._renamed_params[old]: value for old, value in given.items()}

    def set_params(self, **params: Any) -> Any:
        old = {k: params.pop(k) for k in list(params) if k in self._renamed_params}
        for k in old:
            _warn(type(self), k, self._renamed_params[k], stacklevel=3)
        params.update(self._map_renamed(old))
        return super().set_params(**params)  # type: ignore[misc]

    @classmethod
    def _upgrade_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """A saved attribute dict with old names renamed and parameters added since filled
        with their defaults (files written before the rename still load)."""
        state = dict(state)
        old = {k: state.pop(k) for k in list(state) if k in cls._renamed_params}
        if old:  # the file was written by a release that had these names: nothing to warn
            probe = object.__new__(cls)
            object.__setattr__(probe, "__dict__", dict(state))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                state.update(probe._map_renamed(old))
            state.update({k: v for k, v in vars(probe).items() if k not in state})
        for name, value in param_defaults(cls).items():
            state.setdefault(name, value)
        return state
