"""Saving and loading fitted sparse-coding estimators without pickle.

A model file is one ``.npz`` archive (read back with ``np.load(allow_pickle=False)``):

* ``__state__``: a UTF-8 JSON document (stored as a uint8 array) describing the object
  tree: plain values inline, every array as ``{"__array__": "a17"}`` naming an entry of
  the archive, every object as ``{"__object__": "DeepSC", "state": {...}}``;
* ``a0``, ``a1``, ...: the numpy arrays and torch tensors of the tree (never dtype object).

Objects are rebuilt only from the closed set of classes in :func:`_classes` (the
estimators, their layer and whitener records, and the scikit-learn pieces of the
classifier), by ``cls.__new__`` and restoring their attributes: no code named by the
file is ever run, and a file naming any other class is refused. The public entry points
are the estimators' ``save(path)`` / ``load(path)`` methods, which call :func:`save_estimator`
and :func:`load_estimator`.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError
from ..io import atomic_write

__all__ = ["FORMAT", "PersistMixin", "persistable", "save_estimator", "load_estimator"]

FORMAT = "sparsenet-estimator"
VERSION = 1
MAX_STATE_BYTES = 64 << 20  # the JSON part; arrays are bounded by the archive itself


# The only classes a model file may name: scikit-learn's, listed in _classes, and
# sparsenet's, each registered by its own module with @persistable (a registry rather than
# imports here, so this module imports none of the estimators that import it).
_REGISTRY: dict[str, type] = {}


def persistable(cls: type) -> type:
    """Class decorator: objects of ``cls`` may be written to and read from model files."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _classes() -> dict[str, type]:
    """The only classes a model file may name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    third_party: list[type] = [Pipeline, StandardScaler, LinearSVC, LogisticRegression]
    return {**{c.__name__: c for c in third_party}, **_REGISTRY}


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.classes = _classes()

    def add(self, arr: np.ndarray) -> str:
        if arr.dtype == object:
            raise TypeError("object arrays cannot be saved without pickle")
        key = f"a{len(self.arrays)}"
        # keep a Fortran-ordered array so (LogisticRegression's coef_ is one): a matmul
        # with the reloaded array must take the same BLAS path, for bit-identical results
        self.arrays[key] = arr if arr.flags.f_contiguous and arr.ndim > 1 else \
            np.ascontiguousarray(arr)
        return key

    def enc(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str, int)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, torch.Tensor):
            return {"__tensor__": self.add(v.detach().cpu().numpy())}
        if isinstance(v, np.ndarray):
            return {"__array__": self.add(v)}
        if isinstance(v, np.generic):
            return {"__scalar__": self.add(np.asarray(v))}
        if isinstance(v, tuple):
            return {"__tuple__": [self.enc(x) for x in v]}
        if isinstance(v, list):
            return [self.enc(x) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError(f"dict keys must be strings, got {list(v)[:3]}")
            return {"__dict__": {k: self.enc(x) for k, x in v.items()}}
        name = type(v).__name__
        if self.classes.get(name) is type(v):
            return {"__object__": name, "state": {k: self.enc(x) for k, x in vars(v).items()}}
        raise TypeError(f"cannot save a {type(v).__module__}.{name} without pickle")


def save_estimator(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` (an allowed estimator) to ``path`` as described in the module docstring."""
    w = _Writer()
    doc = {"format": FORMAT, "version": VERSION, "root": w.enc(obj)}
    state = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)

    def writer(fh: Any) -> None:
        np.savez(fh, **{"__state__": state, **w.arrays})  # type: ignore[arg-type]

    atomic_write(path, writer)


class _Reader:
    def __init__(self, archive: Any, source: str) -> None:
        self.archive, self.source, self.classes = archive, source, _classes()

    def bad(self, what: str) -> CorruptFileError:
        return CorruptFileError(f"{self.source}: not a sparsenet estimator file ({what})")

    def array(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or key == "__state__" or key not in self.archive.files:
            raise self.bad(f"missing array {key!r}")
        return np.asarray(self.archive[key])

    def dec(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str, int, float)):
            return v
        if isinstance(v, list):
            return [self.dec(x) for x in v]
        if not isinstance(v, dict) or len(v) not in (1, 2):
            raise self.bad(f"unexpected value of type {type(v).__name__}")
        if "__tensor__" in v:
            # order="K": a column-major tensor comes back column-major, so its matmuls take
            # the same kernel as before saving (a C copy rounds differently, ~1e-6)
            return torch.from_numpy(self.array(v["__tensor__"]).copy(order="K"))
        if "__array__" in v:
            return self.array(v["__array__"])
        if "__scalar__" in v:
            return self.array(v["__scalar__"])[()]
        if "__float__" in v and v["__float__"] in ("nan", "inf", "-inf"):
            return float(v["__float__"])
        if "__tuple__" in v and isinstance(v["__tuple__"], list):
            return tuple(self.dec(x) for x in v["__tuple__"])
        if "__dict__" in v and isinstance(v["__dict__"], dict):
            return {str(k): self.dec(x) for k, x in v["__dict__"].items()}
        if "__object__" in v and isinstance(v.get("state"), dict):
            cls = self.classes.get(v["__object__"]) if isinstance(v["__object__"], str) else None
            if cls is None:
                raise self.bad(f"class {v['__object__']!r} is not one sparsenet rebuilds")
            obj: Any = object.__new__(cls)
            state = {str(k): self.dec(x) for k, x in v["state"].items()}
            upgrade = getattr(cls, "_upgrade_state", None)
            if upgrade is not None:  # parameters renamed (n_atoms → n_components) or added
                state = upgrade(state)
            for k, x in state.items():
                object.__setattr__(obj, k, x)
            return obj
        raise self.bad(f"unexpected entry {sorted(v)[:2]}")


def load_estimator(path: str | os.PathLike[str], expected: type | None = None) -> Any:
    """Read a file written by :func:`save_estimator`; ``expected`` checks the root class.

    Raises
    ------
    CorruptFileError for anything that is not such a file (never unpickles).
    """
    source = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__state__" not in archive.files:
                raise CorruptFileError(f"{source}: not a sparsenet estimator file (no state)")
            raw = archive["__state__"]
            if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_STATE_BYTES:
                raise CorruptFileError(f"{source}: not a sparsenet estimator file (bad state)")
            try:
                doc = json.loads(raw.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise CorruptFileError(f"{source}: corrupt estimator state ({exc})") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT \
                    or doc.get("version") != VERSION:
                raise CorruptFileError(f"{source}: not a sparsenet estimator file (format)")
            try:
                obj = _Reader(archive, source).dec(doc.get("root"))
            except RecursionError:
                raise CorruptFileError(f"{source}: estimator state nested too deeply") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptFileError(f"{source}: not a sparsenet estimator file ({exc})") from None
    if expected is not None and not isinstance(obj, expected):
        raise CorruptFileError(
            f"{source}: holds a {type(obj).__name__}, expected a {expected.__name__}"
        )
    return obj


class PersistMixin:
    """``save(path)`` / ``cls.load(path)`` for the sparse-coding estimators (no pickle)."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this (fitted) estimator to ``path``, an ``.npz`` archive plus JSON state."""
        save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Read an estimator written by :meth:`save`; CorruptFileError for anything else."""
        return load_estimator(path, expected=cls)
