"""``sparsenet bench``: latency and memory of a .snn under each runtime, side by side."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import SparsenetError
from .common import add_output_args, emit, input_shape, positive_ints

__all__ = ["register"]


_batches = positive_ints("--batch", "1,16,64")


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"bad --threads {text!r}; expected a positive integer")
    return n


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="latency p50/p90, throughput and weight memory of a .snn: "
                       "dense torch vs the sparse runtime vs onnxruntime")
    p.add_argument("model_path", metavar="MODEL", help=".snn file")
    p.add_argument("--batch", type=_batches, default=(1, 16, 64), help="batch sizes (1,16,64)")
    p.add_argument("--threads", type=_threads, default=1, help="threads for every runtime (1)")
    p.add_argument("--rounds", type=_threads, default=30, help="interleaved timing rounds (30)")
    p.add_argument("--input-shape", type=input_shape, default=None,
                   help="per-sample input shape C,H,W for custom models")
    add_output_args(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..runtime.bench import bench_file, format_bench

    try:
        r = bench_file(args.model_path, batches=args.batch, threads=args.threads,
                       rounds=args.rounds, input_shape=args.input_shape)
    except ValueError as exc:
        raise SparsenetError(str(exc)) from None
    emit(args, r, lambda: format_bench(r))
    return 0
