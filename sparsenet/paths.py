"""Output paths checked before any work starts.

Every command that writes a file or a directory calls :func:`check_output` on it first,
so that a bad ``--out`` fails in a second instead of after a whole training or fit, and
so that an input is never silently replaced by another format. The checks, in order:

* the output is not one of the inputs (``compress x.pt --out x.pt``);
* its extension does not name another sparsenet format (``train --out z.snn``: a
  checkpoint written under the ``.snn`` name), see :data:`EXTENSIONS`;
* an existing output is of the right kind (a file output is not a directory, a
  directory output is not a file);
* no ancestor is a file (``--out d.pt/x.pt``);
* the nearest existing ancestor directory accepts a new file (a probe file is created
  and removed at once; nothing else is created, no directory is made).

All problems raise :class:`OutputPathError` (a :class:`~sparsenet.errors.SparsenetError`)
naming the user's path, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import SparsenetError

__all__ = ["OutputPathError", "EXTENSIONS", "check_output", "check_input_dir"]

# Which format each sparsenet extension stands for; an output of one format whose name
# ends in another format's extension is refused. Unknown extensions are allowed.
EXTENSIONS: dict[str, str] = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".snn": "snn",
    ".npz": "deepsc",
    ".toml": "recipe",
    ".json": "json",
    ".onnx": "onnx",
}

_NAMES = {"checkpoint": "a checkpoint", "snn": "a compressed .snn model",
          "deepsc": "a DeepSC model", "recipe": "a recipe", "json": "a JSON file",
          "onnx": "an ONNX model", "file": "a file", "dir": "a directory"}
_KINDS = ("checkpoint", "snn", "deepsc", "json", "onnx", "dir", "file")


class OutputPathError(SparsenetError):
    """An output path cannot be written as asked (the message names the path)."""


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:  # pragma: no cover - a race or a dangling link: compare names
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _probe(directory: Path, shown: str) -> None:
    """Create and remove a temporary file in ``directory`` (the only reliable writability test:
    ``os.access`` says yes to root on read-only mounts and on /proc)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sparsenet-probe-", dir=directory)
    except OSError as exc:
        raise OutputPathError(
            f"{shown}: cannot write into {directory} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(tmp)


def check_output(path: str | os.PathLike[str], kind: str = "file",
                 inputs: Iterable[str | os.PathLike[str] | None] = (),
                 flag: str = "--out") -> Path:
    """Check that ``path`` can be written as a ``kind`` output; returns it as a Path.

    Parameters
    ----------
    path : the output the user asked for.
    kind : ``"checkpoint"`` (.pt), ``"snn"``, ``"deepsc"`` (.npz), ``"json"``, ``"dir"``
        (a directory, created later by the command) or ``"file"`` (any other file).
    inputs : paths the command reads; the output may not be any of them.
    flag : how the user named the output, for the message (``--out``, ``--run-dir``).

    Raises
    ------
    OutputPathError naming ``path`` and what is wrong. Nothing is created.
    """
    if kind not in _KINDS:  # pragma: no cover - programming error
        raise ValueError(f"kind {kind!r}; expected one of {_KINDS}")
    p = Path(path)
    shown = f"{flag} {os.fspath(path)}"
    if not os.fspath(path):
        raise OutputPathError(f"{flag}: empty path")
    for src in inputs:
        if src is not None and _same(p, Path(src)):
            raise OutputPathError(
                f"{shown}: is the input {os.fspath(src)}; write to another file "
                "(the input would be replaced by another format)"
            )
    ext_kind = EXTENSIONS.get(p.suffix.lower())
    if kind != "dir" and ext_kind is not None and ext_kind != kind and kind != "file":
        want = [e for e, k in EXTENSIONS.items() if k == kind]
        raise OutputPathError(
            f"{shown}: a {p.suffix} name is for {_NAMES[ext_kind]}, but this command writes "
            f"{_NAMES[kind]}" + (f"; use a {'/'.join(want)} name" if want else "")
        )
    if p.exists() or p.is_symlink():
        if kind == "dir" and not p.is_dir():
            raise OutputPathError(f"{shown}: exists and is not a directory")
        if kind != "dir" and p.is_dir():
            raise OutputPathError(f"{shown}: is a directory, expected a file path")
    # The nearest existing ancestor must be a directory we can create files in.
    parent = p if (kind == "dir" and p.is_dir()) else p.parent
    probe = parent
    while not probe.exists():
        if probe.is_symlink():
            raise OutputPathError(f"{shown}: {probe} is a dangling link")
        if probe.parent == probe:  # pragma: no cover - a root that does not exist
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{shown}: {probe} is a file, not a directory")
    _probe(probe, shown)
    return p


def check_input_dir(path: str | os.PathLike[str], what: str = "directory") -> Path:
    """``path`` must be an existing directory (for commands that read one, e.g. ``report``)."""
    p = Path(path)
    if not p.exists():
        raise OutputPathError(f"{os.fspath(path)}: no such {what}")
    if not p.is_dir():
        raise OutputPathError(f"{os.fspath(path)}: is a file, expected a {what}")
    return p
