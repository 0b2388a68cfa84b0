"""Deep Compression with sparsenet's pipeline against the same pipeline built from peer tools.

Both start from the same trained dense model and follow the same recipe (the built-in
``deep-compression`` variant for the model: per-layer targets, iterations, retraining at
lr/10, bits):

* **sparsenet**: ``sparsenet.pipeline.compress(model, data, recipe)`` → ``.snn`` file.
* **peer**: ``torch.nn.utils.prune.l1_unstructured`` per layer (``global_unstructured`` for a
  global target), iteratively to the same targets, with the same retraining (``sparsenet.training.fit``, same config); scikit-learn
  ``KMeans`` (linear init, one run) on each layer's non-zeros; the weights as CSR arrays
  (``scipy.sparse``) whose column indices and cluster indices are Huffman coded with
  ``dahuffman``; codebooks, row pointers and biases stored raw. No centroid fine-tuning:
  no peer tool offers it. The peer's size is the sum of its byte streams plus the pickled
  code tables, and its accuracy is measured on the weights decoded back from those streams.

Usage::

    python benchmarks/bench_pipeline.py --model lenet300 --threads 1          # full recipe
    python benchmarks/bench_pipeline.py --model lenet300 --quick              # minutes

Prints a table and writes ``results.json`` (+ ``--out``) with size, accuracy, wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import git_commit, load_baseline  # noqa: E402  (benchmarks/_common.py)

from sparsenet.checkpoint import load_model  # noqa: E402
from sparsenet.data import Dataset, load_dataset  # noqa: E402
from sparsenet.layers import resolve_table  # noqa: E402
from sparsenet.pipeline import compress, load_recipe  # noqa: E402
from sparsenet.pipeline.stages import _jsonable  # noqa: E402
from sparsenet.training import default_config, evaluate, fit, seed_everything  # noqa: E402

MODELS = ("lenet300", "lenet5")


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def peer_pipeline(model: nn.Module, data: Dataset, recipe: Any) -> dict[str, Any]:
    """torch prune + sklearn KMeans + dahuffman over CSR, following ``recipe``'s settings."""
    import torch.nn.utils.prune as tprune
    from dahuffman import HuffmanCodec
    from scipy import sparse
    from sklearn.cluster import KMeans

    stages = {s.kind: s.settings for s in recipe.stages}
    pr, sh = stages["prune"], stages["share"]
    layers = _layers(model)
    global_target = pr.get("sparsity")  # one threshold over all layers, like sparsenet's default
    if "per_layer" in pr:  # names, kinds ("conv") or globs, resolved as sparsenet resolves them
        targets = {n: v for n, v in resolve_table(model, pr["per_layer"], what="per_layer").items()
                   if n in layers}
    else:
        targets = dict.fromkeys(layers, global_target)
    bits_of = resolve_table(model, sh["weight_bits"], what="weight_bits")
    base = default_config(model.arch["name"], data.name).replace(quiet=True)  # type: ignore[union-attr]
    n = pr["iterations"]
    done = dict.fromkeys(targets, 0.0)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    for k in range(1, n + 1):
        for name, s in targets.items():
            goal = 1.0 - (1.0 - s) ** (k / n)  # the same geometric schedule as sparsenet
            amount = 1.0 - (1.0 - goal) / (1.0 - done[name])  # of what is left
            if global_target is None:
                tprune.l1_unstructured(layers[name], "weight", amount=float(amount))
            done[name] = goal
        if global_target is not None:
            tprune.global_unstructured([(m, "weight") for m in layers.values()],
                                       pruning_method=tprune.L1Unstructured, amount=float(amount))
        cfg = base.replace(epochs=pr["retrain_epochs"], lr=base.lr * pr["lr_factor"],
                           seed=recipe.seed * 1000 + 1)
        if cfg.epochs:
            fit(model, data.train, cfg)
    for name in targets:
        tprune.remove(layers[name], "weight")
    times["prune"] = time.perf_counter() - t0
    acc_pruned = evaluate(model, data.test)["accuracy"]

    t0 = time.perf_counter()
    streams: dict[str, bytes] = {}
    tables = 0
    for name, m in layers.items():
        bits = bits_of.get(name, 32)
        w = m.weight.detach().numpy().reshape(m.weight.shape[0], -1)  # (out, in·kh·kw)
        nz = w[w != 0].reshape(-1, 1).astype(np.float64)
        k = min(2**bits, len(nz))
        init = np.linspace(nz.min(), nz.max(), k).reshape(-1, 1)  # Han's linear init
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4).fit(nz)
        codebook = km.cluster_centers_.reshape(-1).astype(np.float32)
        csr = sparse.csr_matrix(w)
        csr.sort_indices()
        labels = km.predict(csr.data.reshape(-1, 1).astype(np.float64))
        for label, symbols in (("col", csr.indices.tolist()), ("idx", labels.tolist())):
            codec = HuffmanCodec.from_data(symbols)
            streams[f"{name}.{label}"] = codec.encode(symbols)
            tables += len(pickle.dumps(codec.get_code_table()))
            assert codec.decode(streams[f"{name}.{label}"]) == symbols
        streams[f"{name}.indptr"] = csr.indptr.astype(np.int32).tobytes()
        streams[f"{name}.codebook"] = codebook.tobytes()
        if m.bias is not None:
            streams[f"{name}.bias"] = m.bias.detach().numpy().astype(np.float32).tobytes()
        # decode back: the accuracy is that of the stored model
        dense = sparse.csr_matrix((codebook[labels], csr.indices, csr.indptr), shape=w.shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(dense.toarray()).reshape(m.weight.shape))
    times["share+encode"] = time.perf_counter() - t0
    size = sum(len(b) for b in streams.values()) + tables
    dense_bytes = 4 * sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                          for m in layers.values())
    return {
        "accuracy_pruned": acc_pruned,
        "accuracy": evaluate(model, data.test)["accuracy"],
        "bytes": size,
        "table_bytes": tables,
        "compression": dense_bytes / size,
        "seconds": sum(times.values()),
        "stage_seconds": times,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet300", choices=MODELS)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--checkpoint", help="dense trained model (default: the baseline from benchmarks/_common.py, trained on first use)")
    ap.add_argument("--quick", action="store_true",
                    help="10k training samples, 2 rounds of 1 retraining epoch, 1 fine-tuning epoch")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    recipe = load_recipe("deep-compression", model=args.model)
    if args.quick:
        data = data.subset(n_train=10_000)
        d = recipe.to_dict()
        for st in d["stages"]:
            if "prune" in st:
                st["prune"].update(iterations=2, retrain_epochs=1, sensitivity=False)
            if "share" in st:
                st["share"]["finetune_epochs"] = 1
        recipe = load_recipe(d)
    dense, _ = (load_model(args.checkpoint) if args.checkpoint else load_baseline(args.model))
    dense_acc = evaluate(dense, data.test)["accuracy"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.model}-{'quick' if args.quick else 'full'}"

    seed_everything(0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        _, rep = compress(copy.deepcopy(dense), data, recipe, run_dir=tmp,
                          out=os.path.join(tmp, "model.snn"), quiet=True, report=False)
    ours_wall = time.perf_counter() - t0
    ours = {"accuracy": rep["final"]["accuracy"], "bytes": rep["final"]["file_bytes"],
            "compression": rep["final"]["compression"], "seconds": ours_wall,
            "stages": [{k: s.get(k) for k in ("label", "accuracy", "compression", "seconds")}
                       for s in rep["stages"]]}
    seed_everything(0)
    peer = peer_pipeline(copy.deepcopy(dense), data, recipe)

    commit = git_commit()
    result = {
        "benchmark": "pipeline", "model": args.model, "data": data.name, "quick": args.quick,
        "recipe": recipe.to_dict(), "dense_accuracy": dense_acc, "sparsenet": ours, "peer": _jsonable(peer),
        "ratios": {"size_peer_over_ours": peer["bytes"] / ours["bytes"],
                   "time_peer_over_ours": peer["seconds"] / ours["seconds"]},
        "commit": commit,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   "shared with other jobs while measured (timings are noisy)",
        "torch_threads": torch.get_num_threads(),
    }
    (out / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model} on {data.name} ({'quick' if args.quick else 'full recipe'}), "
          f"dense accuracy {dense_acc:.4f}")
    print(f"{'pipeline':<34}{'accuracy':>9}{'bytes':>10}{'ratio':>8}{'seconds':>9}")
    for name, r in (("sparsenet (prune/share/Huffman)", ours),
                    ("torch prune + KMeans + dahuffman", peer)):
        print(f"{name:<34}{r['accuracy']:>9.4f}{r['bytes']:>10,}{r['compression']:>7.1f}x"
              f"{r['seconds']:>9.1f}")
    print(f"-> {out / (tag + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
