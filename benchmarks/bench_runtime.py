"""Sparse runtime vs dense torch vs onnxruntime on Deep Compression LeNets (issue 15).

For each model: batch 1, 16 and 64; 1 and 2 threads; every runtime in the same interleaved
rounds (medians of rounds, see sparsenet.runtime.bench); resident weight memory against the
.snn file size; and, in fresh processes, numba's one-off compile time (empty cache), the
load time with a warm cache, and the first call after load against a later call.

Models: ``$SPARSENET_ARTIFACTS/dc-<model>/<model>.snn`` (``sparsenet compress --recipe
deep-compression``) when present; otherwise a one-shot stand-in at Han's per-layer densities
(magnitude pruning + k-means sharing of the trained baseline, no retraining: the same
sparsity pattern statistics, which is what speed depends on). resnet/vit are picked up from
``dc-<name>/<name>.snn`` once they exist.

    python benchmarks/bench_runtime.py [--models lenet300,lenet5] [--rounds 40]

Writes benchmarks/results/runtime/runtime.json (commit, machine) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ROOT, artifacts_dir, baseline_path, git_commit, machine  # noqa: E402

from sparsenet.io import write_json  # noqa: E402
from sparsenet.runtime.bench import bench_file  # noqa: E402

HAN = {  # Deep Compression Tables 1-2: kept fraction per layer
    "lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
    "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
}
TARGETS = "LeNet-300 b1: >=3x dense, >=1.5x onnxruntime; LeNet-5 b1: >=1.5x dense; LeNet-300 b64: >=2x dense; memory <=2x file"


def snn_for(model: str, work: Path) -> tuple[Path, str]:
    p = artifacts_dir() / f"dc-{model}" / f"{model}.snn"
    if p.exists():
        return p, "deep-compression recipe"
    if model not in HAN:
        raise SystemExit(f"no {p}")
    from sparsenet.checkpoint import load_model
    from sparsenet.coding import save_snn
    from sparsenet.prune import prune
    from sparsenet.share import share_weights

    m, _ = load_model(baseline_path(model))
    prune(m, "magnitude", per_layer={k: 1 - v for k, v in HAN[model].items()})
    share_weights(m, weight_bits="conv=8,fc=5")
    out = work / f"{model}-oneshot.snn"
    save_snn(m, out, gap_bits="auto")
    return out, "one-shot stand-in at Han's densities"


def fresh_process(path: Path, cache_dir: str) -> dict:
    """Import + load + first call + later calls in a new interpreter with NUMBA_CACHE_DIR."""
    code = textwrap.dedent(f"""
        import json, time
        t0 = time.perf_counter()
        import torch, sparsenet
        torch.set_num_threads(1)
        t1 = time.perf_counter()
        m = sparsenet.load({str(path)!r}, runtime="sparse")
        t2 = time.perf_counter()
        from sparsenet.runtime import plan_of
        p = plan_of(m)
        if not p.input_shapes:
            raise SystemExit("no compiled plan: " + p.describe())
        x = torch.rand(1, *p.input_shapes[0])
        with torch.no_grad():
            t3 = time.perf_counter(); m(x); first = time.perf_counter() - t3
            later = []
            for _ in range(200):
                t3 = time.perf_counter(); m(x); later.append(time.perf_counter() - t3)
        later.sort()
        print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_call_us": first * 1e6,
                           "later_call_us": later[len(later) // 2] * 1e6}}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lenet300,lenet5,resnet,vit")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/runtime"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    results: dict = {"commit": git_commit(), "machine": machine(), "targets": TARGETS, "models": {}}
    for model in args.models.split(","):
        try:
            path, source = snn_for(model, work)
        except SystemExit as exc:
            print(f"[skip] {model}: {exc}")
            continue
        entry: dict = {"file": str(path), "source": source, "threads": {}}
        cache = tempfile.mkdtemp(prefix="numba-cache-")
        cold = fresh_process(path, cache)  # compiles into the empty cache
        warm = fresh_process(path, cache)  # loads the cached machine code
        if "error" not in cold and "error" not in warm:
            entry["numba_compile_s"] = cold["load_s"] - warm["load_s"]
        entry["cold_process"], entry["warm_process"] = cold, warm
        for t in (int(s) for s in args.threads.split(",")):
            entry["threads"][str(t)] = bench_file(path, batches=(1, 16, 64), threads=t, rounds=args.rounds)
        results["models"][model] = entry
    out = Path(args.out)
    write_json(out / "runtime.json", results)
    print(format_table(results))
    print(f"-> {out / 'runtime.json'}")


def format_table(results: dict) -> str:
    lines = [f"commit {results['commit']}  {results['machine']['processor']}  targets: {results['targets']}"]
    lines.append(f"{'model':<9} {'thr':>3} {'batch':>5} {'dense µs':>10} {'sparse µs':>10} {'ort µs':>10} "
                 f"{'sp/dense':>9} {'sp/ort':>7}")
    for model, e in results["models"].items():
        for t, r in e["threads"].items():
            for b, row in r["batches"].items():
                d, s = row["dense"]["p50_us"], row["sparse"]["p50_us"]
                o = row.get("onnxruntime", {}).get("p50_us")
                lines.append(f"{model:<9} {t:>3} {b:>5} {d:>10.1f} {s:>10.1f} "
                             f"{o if o is None else round(o, 1)!s:>10} {d / s:>8.2f}x "
                             f"{'' if o is None else f'{o / s:.2f}x':>7}")
        r1 = next(iter(e["threads"].values()))
        sp = r1["runtimes"]["sparse"]
        lines.append(f"{model:<9} memory: sparse {sp['weight_bytes']:,} B = "
                     f"{sp['weight_bytes'] / r1['file_bytes']:.2f}x file ({r1['file_bytes']:,} B); dense "
                     f"{r1['runtimes']['dense']['weight_bytes']:,} B  [{e['source']}]")
        w = e["warm_process"]
        if "error" in w:
            lines.append(f"{model:<9} fresh process: {w['error']}")
            continue
        lines.append(f"{model:<9} numba compile {e['numba_compile_s']:.1f} s (once); warm load "
                     f"{w['load_s'] * 1e3:.0f} ms; first call {w['first_call_us']:.0f} µs vs later "
                     f"{w['later_call_us']:.0f} µs ({w['first_call_us'] / w['later_call_us']:.2f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
