"""Exception types. The CLI turns every :class:`SparsenetError` into one line and exit code 2."""

from __future__ import annotations

__all__ = [
    "SparsenetError",
    "DataError",
    "CheckpointError",
    "SpecError",
    "CorruptFileError",
    "ModelSourceError",
]


class SparsenetError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class DataError(SparsenetError):
    """A dataset is missing, truncated or malformed."""


class CheckpointError(SparsenetError):
    """A file is not a sparsenet checkpoint, or does not match its architecture."""


class SpecError(SparsenetError, ValueError):
    """A malformed specification string (``fc1=0.9,fc2=0.8``, ``log1p:1e-4@fc1``...)."""


class CorruptFileError(SparsenetError):
    """A compressed ``.snn`` file is truncated, corrupt, of another version, or hostile."""


class ModelSourceError(SparsenetError):
    """A ``--model`` / ``--weights`` source that cannot be resolved or does not fit."""
