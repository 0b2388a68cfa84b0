"""Wall time of data-parallel work on 1 process against 2 torchrun processes (gloo, CPU).

Two workloads, each timed inside the workers (start-up and data loading excluded), all in one
run of this script so the ratios share the machine's load:

* ``retrain``: the prune-retrain stage of LeNet-5 on a Fashion-MNIST subset: the trained
  baseline (benchmarks/_common.py's baseline_path, trained on first use) pruned to 90% by magnitude, then
  ``--epochs`` epochs of ``sparsenet.training.fit`` (global batch ``--batch``; DDP under
  torchrun, so the 2-rank run does the same global steps as the 1-process run);
* ``dictionary``: ``DictionaryLearner`` (64 atoms, batch 256, CD lasso) on ZCA-free
  normalised 8×8 Fashion-MNIST patches; each rank encodes half of every mini-batch, A and B
  are all-reduced.

Configurations: 1 process × 1 thread (the reference), 2 processes × 1 thread (torchrun), and
1 process × 2 threads (the other way to use two cores). Efficiency = t(1×1) / (2 · t(2×1)).

    python benchmarks/bench_distributed.py                 # writes benchmarks/results/distributed/
    python benchmarks/bench_distributed.py --train-n 6000 --epochs 1 --patches 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sparsenet

import torch  # noqa: E402
from _common import baseline_path, git_commit  # noqa: E402


# ---------------------------------------------------------------- workers (run per rank)
def work_retrain(args: argparse.Namespace) -> dict[str, Any]:
    from sparsenet.checkpoint import load_model
    from sparsenet.data import fashion_mnist
    from sparsenet.prune import prune
    from sparsenet.training import TrainConfig, evaluate, fit

    data = fashion_mnist()
    x, y = data.x_train[: args.train_n], data.y_train[: args.train_n]
    model, _ = load_model(args.checkpoint)
    prune(model, "magnitude", sparsity=0.9)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=0.001, seed=0, quiet=True)
    t0 = time.perf_counter()
    fit(model, (x, y), cfg)
    seconds = time.perf_counter() - t0
    acc = evaluate(model, (data.x_test[:2000], data.y_test[:2000]))["accuracy"]
    return {"seconds": seconds, "accuracy": acc, "steps": -(-len(x) // args.batch) * args.epochs}


def work_dictionary(args: argparse.Namespace) -> dict[str, Any]:
    from sparsenet.data import fashion_mnist
    from sparsenet.sparse_coding import DictionaryLearner
    from sparsenet.sparse_coding.patches import extract_patches, normalize_patches

    imgs = fashion_mnist().x_train[:2000]
    gen = torch.Generator().manual_seed(0)
    p = extract_patches(imgs, 8, 4).reshape(-1, 64)  # (N·6·6, 64)
    p = p[torch.randperm(len(p), generator=gen)[: args.patches]]
    X = normalize_patches(p).double()
    t0 = time.perf_counter()
    learner = DictionaryLearner(64, alpha=0.1, batch_size=256, max_iter=1, random_state=0).fit(X)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "D_sum": float(learner.components_.sum()),
            "D": learner.components_.tolist(), "steps": learner.n_steps_}


def worker(args: argparse.Namespace) -> None:
    from sparsenet import distributed as dist_

    dist_.init_from_env()
    result = {"retrain": work_retrain, "dictionary": work_dictionary}[args.worker](args)
    # the slowest rank decides the wall time
    t = dist_.all_reduce_sum(torch.tensor([result["seconds"]], dtype=torch.float64))
    result["seconds_max"] = float(t) if dist_.world_size() == 1 else None
    times = [torch.zeros(1, dtype=torch.float64) for _ in range(dist_.world_size())]
    if dist_.is_distributed():
        import torch.distributed as dist

        dist.all_gather(times, torch.tensor([result["seconds"]], dtype=torch.float64))
        result["seconds_max"] = max(float(v) for v in times)
    if dist_.is_main():
        Path(args.json).write_text(json.dumps(result))
    dist_.barrier()


# ---------------------------------------------------------------- driver
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(kind: str, procs: int, threads: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{kind}-{procs}x{threads}.json"
    me = [str(Path(__file__).resolve()), "--worker", kind, "--json", str(out),
          "--train-n", str(args.train_n), "--epochs", str(args.epochs), "--batch", str(args.batch),
          "--patches", str(args.patches), "--checkpoint", str(args.checkpoint)]
    if procs == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-addr", "127.0.0.1", "--master-port", str(_port()), *me]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, timeout=1800, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed"))
    ap.add_argument("--train-n", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patches", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=1, help="alternate the configurations this often")
    ap.add_argument("--worker", choices=["retrain", "dictionary"], help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help="dense LeNet-5 (default: the Fashion-MNIST baseline)")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        from sparsenet.distributed import finish

        finish(0)

    # resolved once here (training it if missing) so the ranks never race to train it
    args.checkpoint = args.checkpoint or str(baseline_path("lenet5"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = [(1, 1), (2, 1), (1, 2)]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for _ in range(args.repeats):
        for kind in ("retrain", "dictionary"):
            for procs, threads in configs:
                r = launch(kind, procs, threads, args, out)
                rows.setdefault(kind, {}).setdefault(f"{procs}x{threads}", []).append(r)
    for f in out.glob("*x*.json"):
        f.unlink()
    summary: dict[str, Any] = {}
    print(f"{'workload':<11} {'1 proc x1':>10} {'2 procs x1':>11} {'1 proc x2':>10} "
          f"{'speed-up':>9} {'efficiency':>10}")
    for kind, by in rows.items():
        best = {c: min(r["seconds_max"] for r in rs) for c, rs in by.items()}
        speed = best["1x1"] / best["2x1"]
        s: dict[str, Any] = {"seconds": best, "speedup_2proc": speed, "efficiency_2proc": speed / 2,
                             "speedup_2threads": best["1x1"] / best["1x2"]}
        if kind == "retrain":
            s["accuracy"] = {c: rs[0]["accuracy"] for c, rs in by.items()}
        else:
            import numpy as np

            d1, d2 = (np.array(by[c][0]["D"]) for c in ("1x1", "2x1"))
            s["dictionary_max_abs_diff_1_vs_2_procs"] = float(np.abs(d1 - d2).max())
            s["steps"] = by["1x1"][0]["steps"]
        summary[kind] = s
        print(f"{kind:<11} {best['1x1']:>9.1f}s {best['2x1']:>10.1f}s {best['1x2']:>9.1f}s "
              f"{speed:>8.2f}x {speed / 2:>9.0%}")
    commit = git_commit()
    result = {
        "commit": commit,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                   "shared with other jobs during the run (timings noisy; ratios from one run)",
        "torch": torch.__version__,
        "backend": "gloo",
        "args": {k: v for k, v in vars(args).items() if k not in ("worker", "json")},
        "results": summary,
    }
    (out / "bench_distributed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'bench_distributed.json'}")


if __name__ == "__main__":
    main()
