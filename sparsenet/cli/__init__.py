"""The ``sparsenet`` command. Each sub-command lives in a module with ``register(subparsers)``.

Errors in the user's input (:class:`~sparsenet.errors.SparsenetError`, missing files,
bad arguments) print one line on stderr and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from ..errors import SparsenetError

__all__ = ["main", "build_parser", "error_line"]

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
    from .common import positive_float

    for cmd in READS_SNN:  # every command that may read a .snn file
        if cmd in sub.choices:
            sub.choices[cmd].add_argument(
                "--max-decode-mb", type=positive_float, default=None, metavar="MB",
                help="largest decoded size a .snn file may declare (default: max(64 MB, "
                "128x the file size); also SPARSENET_MAX_DECODE_MB)")
    return parser


# Commands whose model argument may be a .snn file (they take --max-decode-mb).
READS_SNN = ("eval", "info", "inspect", "decompress", "prune", "sensitivity", "share",
             "factorize", "compress", "run", "bench", "export")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # torch warns about the pickle protocol of a file it then refuses: the refusal is the message.
    warnings.filterwarnings("ignore", module=r"torch\._weights_only_unpickler")
    # Under torchrun (WORLD_SIZE > 1) join the process group; a no-op otherwise.
    from ..distributed import finish, init_from_env, is_distributed

    try:
        init_from_env()
        from .guards import check_args

        check_args(args)  # inputs exist, outputs writable: before any work
        if getattr(args, "max_decode_mb", None):
            from ..coding.container import set_decode_limit

            set_decode_limit(int(args.max_decode_mb * (1 << 20)))
        rc = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``sparsenet info x.pt | head -1``): not an error of ours.
        _silence_stdout()
        rc = 0
    except (SparsenetError, OSError) as exc:
        sys.stderr.write(f"sparsenet: error: {error_line(exc)}\n")
        rc = 2
    except KeyboardInterrupt:
        sys.stderr.write("sparsenet: interrupted\n")
        rc = 130
    if is_distributed():
        finish(int(rc or 0))  # a clean gloo/NCCL exit on every rank (does not return)
    return int(rc or 0)


def error_line(exc: BaseException) -> str:
    """The one-line message of a user error: an OSError names its file, never a traceback."""
    if isinstance(exc, OSError) and not isinstance(exc, SparsenetError):
        name = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        msg = f"{name}: {reason}" if name else reason
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())  # one line, whatever the message held


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
