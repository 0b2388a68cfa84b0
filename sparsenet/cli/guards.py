"""Checks every command's inputs and outputs before the command does any work.

:func:`check_args` runs in :func:`sparsenet.cli.main` right after parsing, for every
command listed in :data:`OUTPUTS`: each output flag is checked with
:func:`sparsenet.paths.check_output` (not an input, the extension of its format, no
file in its way, writable), and each input must be an existing file. A command added
later gets the same checks by adding a line here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import SparsenetError
from ..paths import check_output

__all__ = ["OUTPUTS", "INPUTS", "check_args", "check_input_file"]

# command -> [(argparse dest, output kind)]; kinds as in sparsenet.paths.check_output.
OUTPUTS: dict[str, list[tuple[str, str]]] = {
    "train": [("out", "checkpoint")],
    "prune": [("out", "checkpoint")],
    "sensitivity": [("out", "dir")],
    "share": [("out", "checkpoint"), ("plots", "dir")],
    "factorize": [("out", "checkpoint")],
    "compress": [("out", "snn"), ("run_dir", "dir")],
    "decompress": [("out", "checkpoint")],
    "deepsc": [("out", "dir")],
    "run": [("out", "snn"), ("run_dir", "dir")],
    "report": [("out", "dir")],
    "export": [("out", "onnx")],
}
# command -> argparse dests naming input files (checked to exist and be files).
INPUTS: dict[str, list[str]] = {
    name: ["model_path"]
    for name in ("prune", "sensitivity", "share", "factorize", "compress", "decompress",
                 "inspect", "eval", "info", "bench", "export")
}


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """``path`` must exist and be a regular file; an empty file is no model either. A zip
    checkpoint (``.pt``) must also be intact (:func:`sparsenet.integrity.verify_checkpoint_zip`:
    torch.load itself would load a flipped weight byte silently)."""
    p = Path(path)
    if not p.exists():
        raise SparsenetError(f"{os.fspath(path)}: no such file")
    if p.is_dir():
        raise SparsenetError(f"{os.fspath(path)}: is a directory, expected a model file")
    if p.stat().st_size == 0:
        raise SparsenetError(f"{os.fspath(path)}: is empty, expected a model file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04" and p.suffix.lower() != ".npz":
        from ..integrity import verify_checkpoint_zip

        verify_checkpoint_zip(p)
    return p


def _names_no_file(spec: str) -> bool:
    """True for a model source that is not a path: a registry name or ``pkg.mod:factory``."""
    if os.path.exists(spec):
        return False
    from ..sources import source_kind

    return source_kind(spec) in ("registry", "factory")  # else its one-line error


def check_args(args: argparse.Namespace) -> None:
    """Raise a one-line SparsenetError if an input or output of ``args.command`` is unusable."""
    command = getattr(args, "command", None)
    inputs = []
    for dest in INPUTS.get(command or "", []):
        value = getattr(args, dest, None)
        if value is None:
            continue
        if _names_no_file(value):
            continue  # a registry name or package.module:factory (sparsenet.sources checks it)
        check_input_file(value)
        inputs.append(value)
    for dest in ("recipe", "model"):  # a file, or a built-in/registry name
        value = getattr(args, dest, None)
        if isinstance(value, str) and os.path.exists(value):
            if dest == "model":
                check_input_file(value)
            inputs.append(value)
    if command == "train" and getattr(args, "resume", False):
        inputs = []  # train --resume reads and rewrites its own --out, by design
    for dest, kind in OUTPUTS.get(command or "", []):
        value = getattr(args, dest, None)
        if value is not None:
            check_output(value, kind, inputs=inputs, flag="--" + dest.replace("_", "-"))
    if command == "info" and getattr(args, "samples", None) is not None \
            and not getattr(args, "data", None):
        raise SparsenetError("info: --samples N needs --data NAME (activation sparsity)")
