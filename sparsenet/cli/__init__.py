"""The ``sparsenet`` command. Each sub-command lives in a module with ``register(subparsers)``.

Errors in the user's input (:class:`~sparsenet.errors.SparsenetError`, missing files,
bad arguments) print one line on stderr and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import SparsenetError

__all__ = ["main", "build_parser"]

# Sub-command modules, in help order. Each defines register(subparsers).
COMMAND_MODULES = ["train", "prune", "factorize", "share", "coding", "deepsc", "pipeline", "bench", "export"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, exit 2, no usage dump: the message names the bad value.
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparsenet", description="Sparse neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Under torchrun (WORLD_SIZE > 1) join the process group; a no-op otherwise.
    from ..distributed import finish, init_from_env, is_distributed

    try:
        init_from_env()
        rc = args.func(args)
    except (SparsenetError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        msg = str(exc) if not isinstance(exc, OSError) else f"{exc.filename}: {exc.strerror}"
        sys.stderr.write(f"sparsenet: error: {msg}\n")
        rc = 2
    except KeyboardInterrupt:
        sys.stderr.write("sparsenet: interrupted\n")
        rc = 130
    if is_distributed():
        finish(int(rc or 0))  # a clean gloo/NCCL exit on every rank (does not return)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
