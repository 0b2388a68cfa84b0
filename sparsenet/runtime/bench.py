"""Side-by-side latency of the runtimes of one ``.snn`` file: what ``sparsenet bench`` prints.

Runtimes: ``dense`` (torch, decoded weights), ``sparse`` (this package's compiled plan) and
``onnxruntime`` (the exported dense model, when onnxruntime is installed). Every runtime is
timed in the same rounds, interleaved (round r times each runtime once, in turn), so a change
in machine load hits all of them alike; each round is a block of calls lasting about
``block_ms``, giving one per-call time. Latency p50/p90 are over rounds; throughput is
``batch / p50``. Threads: torch, numba and onnxruntime are all held to ``threads``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .memory import weight_bytes

__all__ = ["RUNTIME_NAMES", "bench_file", "format_bench", "onnx_available", "time_rounds"]

RUNTIME_NAMES = ("dense", "sparse", "onnxruntime")


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def time_rounds(fns: dict[str, Callable[[], Any]], rounds: int = 30, block_ms: float = 5.0) -> dict[str, np.ndarray]:
    """Per-call seconds of each function, ``rounds`` interleaved blocks each."""
    calls: dict[str, int] = {}
    for name, fn in fns.items():  # warm up and size the blocks
        fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        calls[name] = max(1, int(block_ms * 1e-3 / one))
    out: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out[name].append((time.perf_counter() - t0) / n)
    return {n: np.asarray(v) for n, v in out.items()}


def _caller(fn: Callable[[Any], Any], arg: Any) -> Callable[[], Any]:
    def call() -> Any:
        return fn(arg)

    return call


def _ort_session(data: bytes, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def bench_file(
    path: str | os.PathLike[str],
    batches: tuple[int, ...] = (1, 16, 64),
    threads: int = 1,
    runtimes: tuple[str, ...] = RUNTIME_NAMES,
    rounds: int = 30,
    block_ms: float = 5.0,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the runtimes of ``path``; returns a JSON-able dict (see :func:`format_bench`)."""
    from ..coding.container import read_snn
    from ..errors import SparsenetError
    from ..inference import build_model_from_snn
    from .plan import guess_input_shape, plan_of

    snn = read_snn(path)  # validated before anything runs
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        dense = build_model_from_snn(snn, "dense", source=os.fspath(path))
        t_dense = time.perf_counter() - t0
        shape = input_shape or guess_input_shape(dense, snn.metadata)
        if shape is None:
            raise SparsenetError(f"{os.fspath(path)}: input shape unknown; pass --input-shape")
        models: dict[str, Any] = {"dense": dense}
        result: dict[str, Any] = {
            "file": os.fspath(path), "file_bytes": os.path.getsize(path), "threads": threads,
            "input_shape": list(shape), "batches": {}, "runtimes": {},
        }
        result["runtimes"]["dense"] = {"weight_bytes": weight_bytes(dense), "load_s": t_dense}
        if "sparse" in runtimes:
            t0 = time.perf_counter()
            sparse = build_model_from_snn(read_snn(path), "sparse", source=os.fspath(path),
                                          threads=threads)
            t_load = time.perf_counter() - t0
            planned = plan_of(sparse)
            if planned is not None and not planned.plans:
                planned.prepare(tuple(shape))
            x1 = torch.rand((1, *shape))
            t0 = time.perf_counter()
            with torch.no_grad():
                sparse(x1)
            first = time.perf_counter() - t0
            models["sparse"] = sparse
            result["runtimes"]["sparse"] = {
                "weight_bytes": weight_bytes(sparse), "load_s": t_load, "first_call_s": first,
                "plan": planned.describe() if planned is not None else "per-module",
            }
        ort_sess = None
        if "onnxruntime" in runtimes and onnx_available():
            from .export import onnx_bytes

            try:
                data = onnx_bytes(dense, tuple(shape))
            except SparsenetError as exc:  # e.g. an operator the exporter lacks: bench the rest
                result["runtimes"]["onnxruntime"] = {"skipped": str(exc)}
            else:
                ort_sess = _ort_session(data, threads)
                import onnx

                init = onnx.load_from_string(data).graph.initializer
                wb = int(sum(np.prod(t.dims) * 4 for t in init))
                result["runtimes"]["onnxruntime"] = {"weight_bytes": wb, "onnx_bytes": len(data)}
        elif "onnxruntime" in runtimes:
            result["runtimes"]["onnxruntime"] = {"skipped": "onnxruntime not installed "
                                                 "(pip install 'sparsenet[onnx]')"}
        gen = torch.Generator().manual_seed(seed)
        for b in batches:
            x = torch.rand((b, *shape), generator=gen)
            xn = x.numpy()
            fns: dict[str, Callable[[], Any]] = {}
            for name, m in models.items():
                fns[name] = _caller(m, x)
            if ort_sess is not None:
                fns["onnxruntime"] = _caller(lambda a: ort_sess.run(None, {"input": a}), xn)
            with torch.no_grad():
                times = time_rounds(fns, rounds, block_ms)
            row: dict[str, Any] = {}
            for name, t in times.items():
                p50, p90 = float(np.median(t)), float(np.percentile(t, 90))
                row[name] = {"p50_us": p50 * 1e6, "p90_us": p90 * 1e6, "per_s": b / p50}
            for name in row:
                row[name]["speedup_vs_dense"] = row["dense"]["p50_us"] / row[name]["p50_us"]
            result["batches"][str(b)] = row
        return result
    finally:
        torch.set_num_threads(old_threads)


def format_bench(r: dict[str, Any]) -> str:
    """The table ``sparsenet bench`` prints."""
    lines = [f"{r['file']}: {r['file_bytes']:,} bytes, input {tuple(r['input_shape'])}, "
             f"{r['threads']} thread(s)"]
    lines.append(f"{'batch':>5} {'runtime':<12} {'p50 µs':>10} {'p90 µs':>10} {'samples/s':>11} {'vs dense':>9}")
    for b, row in r["batches"].items():
        for name, v in row.items():
            lines.append(f"{b:>5} {name:<12} {v['p50_us']:>10.1f} {v['p90_us']:>10.1f} "
                         f"{v['per_s']:>11,.0f} {v['speedup_vs_dense']:>8.2f}x")
    lines.append("resident weight memory")
    for name, v in r["runtimes"].items():
        if "skipped" in v:
            lines.append(f"  {name:<12} skipped: {v['skipped']}")
            continue
        lines.append(f"  {name:<12} {v['weight_bytes']:>10,} bytes ({v['weight_bytes'] / r['file_bytes']:.2f}x the file)")
    sp = r["runtimes"].get("sparse")
    if sp:
        lines.append(f"sparse: load {sp['load_s'] * 1e3:.0f} ms, first call {sp['first_call_s'] * 1e6:.0f} µs")
        lines.append(sp["plan"])
    return "\n".join(lines)
