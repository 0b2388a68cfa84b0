"""Benchmark k-means weight sharing on LeNet-300-100 / LeNet-5 with Fashion-MNIST.

For one model and each variant (dense, 92%-pruned):

1. every init at 2-8 bits (all layers at the same bits): quantisation MSE and test accuracy
   before and after centroid fine-tuning (Deep Compression's Figure 7 / Table 6);
2. clustering time of ``sparsenet.share.KMeans1D`` against ``sklearn.cluster.KMeans``
   (k-means++ init, one run) on the same weights and k, as a ratio measured in one run,
   with both limited to one thread;
3. the lowest bits per layer keeping test accuracy within 0.2 points of the unshared model
   (one layer shared at a time, ``optimal`` init, no fine-tuning), then all layers together.

The 92%-pruned variant is made here: per-layer magnitude pruning with Han et al.'s LeNet
densities (torch.nn.utils.prune), a short retrain, then the masks are made permanent
(plain zeros). It is cached under --cache.

    python benchmarks/bench_share.py --model lenet300
    python benchmarks/bench_share.py --model lenet5 --variants pruned --test-n 5000
    python benchmarks/bench_share.py --render          # markdown tables from the JSON files
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sparsenet

import torch
from _common import git_commit, load_baseline  # noqa: E402  (benchmarks/_common.py)
from torch import nn  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

from sparsenet.checkpoint import load_model, save_model
from sparsenet.data import fashion_mnist
from sparsenet.share import (
    INITS,
    KMeans1D,
    finetune,
    plot_histograms,
    quantization_report,
    share_weights,
    shareable_layers,
    snapshot_codebooks,
)
from sparsenet.training import TrainConfig, evaluate, fit

MODELS = ("lenet300", "lenet5")
# Fraction of weights kept per layer, Han et al. 2015 (Tables 1-2): about 8% overall.
HAN_DENSITY = {
    "lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
    "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
}
BITS = list(range(2, 9))


def pruned_model(name: str, data: Any, cache: Path, retrain_n: int, epochs: int) -> nn.Module:
    """Han's per-layer magnitude pruning (~92%) + a short SGD retrain with the masks held."""
    path = cache / f"{name}-fmnist-pruned92.pt"
    if path.exists():
        return load_model(path)[0]
    model, _ = load_baseline(name)
    for layer, density in HAN_DENSITY[name].items():
        torch_prune.l1_unstructured(model.get_submodule(layer), "weight", amount=1 - density)
    x, y = data.train
    cfg = TrainConfig(epochs=epochs, lr=0.01, momentum=0.9, schedule="cosine", quiet=True)
    fit(model, (x[:retrain_n], y[:retrain_n]), cfg)
    for layer in HAN_DENSITY[name]:
        torch_prune.remove(model.get_submodule(layer), "weight")
    save_model(model, path, metadata={"dataset": "fashion-mnist", "pruned": HAN_DENSITY[name]})
    return model


def acc(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    return evaluate(model, test)["accuracy"]


def model_mse(report: dict[str, Any]) -> float:
    """MSE over all clustered weights of the model (per-layer MSEs weighted by their n)."""
    n = sum(r["nonzero"] for r in report["layers"])
    return sum(r["mse"] * r["nonzero"] for r in report["layers"]) / max(n, 1)


def part_inits(
    base: nn.Module, data: Any, args: argparse.Namespace, test: Any, tag: str, out: Path
) -> list:
    rows = []
    ft_data = (data.train[0][: args.finetune_n], data.train[1][: args.finetune_n])
    for bits in BITS:
        for init in INITS:
            model = _clone(base)
            t0 = time.perf_counter()
            share_weights(model, {"conv": bits, "fc": bits}, init=init, seed=0)
            seconds = time.perf_counter() - t0
            rep0 = quantization_report(model)
            before = snapshot_codebooks(model)
            a0 = acc(model, test)
            finetune(model, ft_data, epochs=1, lr=1e-3, seed=0)
            rep1 = quantization_report(model)
            a1 = acc(model, test)
            if bits == args.plot_bits and init == "linear":
                plot_histograms(model, out / "hist" / tag, before)
            rows.append(
                {
                    "bits": bits,
                    "init": init,
                    "mse": model_mse(rep0),
                    "mse_finetuned": model_mse(rep1),
                    "layer_mse": {r["name"]: r["mse"] for r in rep0["layers"]},
                    "used_clusters": {r["name"]: r["used"] for r in rep0["layers"]},
                    "acc_shared": a0,
                    "acc_finetuned": a1,
                    "cluster_seconds": seconds,
                    "compression": rep0["total"]["compression"],
                }
            )
            print(
                f"  {tag} bits={bits} {init:<8} mse={rows[-1]['mse']:.3e} acc {a0:.4f} -> {a1:.4f} "
                f"({seconds:.2f}s)",
                flush=True,
            )
    return rows


def part_timing(base: nn.Module, tag: str) -> list:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1):
        for layer, module in shareable_layers(base).items():
            w = module.weight.detach().double().flatten().numpy()
            x = w[w != 0]
            for bits in (2, 5, 8):
                k = 2**bits
                if len(np.unique(x)) <= k:
                    continue
                t0 = time.perf_counter()
                sk = KMeans(
                    k, init="k-means++", n_init=1, max_iter=300, tol=1e-4, random_state=0
                ).fit(x.reshape(-1, 1))
                t_sk = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "layer": layer,
                    "n": len(x),
                    "k": k,
                    "sklearn_seconds": t_sk,
                    "sklearn_sse": float(sk.inertia_),
                    "sklearn_iters": int(sk.n_iter_),
                }
                for init in ("kmeans++", "linear", "optimal"):
                    t0 = time.perf_counter()
                    km = KMeans1D(k, init=init, max_iter=300, tol=1e-4, seed=0).fit(x)
                    t = time.perf_counter() - t0
                    row[init] = {
                        "seconds": t,
                        "speedup_vs_sklearn": t_sk / t,
                        "sse": km.inertia_,
                        "sse_vs_sklearn": km.inertia_ / sk.inertia_,
                        "iters": km.n_iter_,
                    }
                rows.append(row)
                print(
                    f"  {tag} {layer} n={len(x)} k={k}: sklearn {t_sk:.3f}s; ours "
                    + ", ".join(
                        f"{i} {row[i]['seconds']:.3f}s (x{row[i]['speedup_vs_sklearn']:.1f})"
                        for i in ("kmeans++", "linear", "optimal")
                    ),
                    flush=True,
                )
    return rows


def part_lowest_bits(
    base: nn.Module, data: Any, args: argparse.Namespace, base_acc: float, tag: str
) -> dict:
    test = data.test  # the full test set: 0.2 points = 20 images
    floor = base_acc - 0.002
    lowest: dict[str, Any] = {}
    for layer in shareable_layers(base):
        for bits in range(1, 9):
            model = _clone(base)
            share_weights(model, {layer: bits}, init="optimal")
            a = acc(model, test)
            if a >= floor or bits == 8:
                lowest[layer] = {"bits": bits, "acc": a, "within": a >= floor}
                break
        print(f"  {tag} {layer}: lowest bits {lowest[layer]}", flush=True)
    model = _clone(base)
    share_weights(model, {k: v["bits"] for k, v in lowest.items()}, init="optimal")
    a_all = acc(model, test)
    rep = quantization_report(model)
    ft = (data.train[0][: args.finetune_n], data.train[1][: args.finetune_n])
    finetune(model, ft, epochs=1, lr=1e-3, seed=0)
    a_ft = acc(model, test)
    print(
        f"  {tag} all layers at those bits: {a_all:.4f}, fine-tuned {a_ft:.4f} (unshared {base_acc:.4f})"
    )
    return {
        "per_layer": lowest,
        "all_layers_acc": a_all,
        "all_layers_acc_finetuned": a_ft,
        "compression": rep["total"]["compression"],
        "storage_bits_before": rep["total"]["storage_bits_before"],
        "storage_bits_after": rep["total"]["storage_bits_after"],
    }


def _clone(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = fashion_mnist()
    out = Path(args.out)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for variant in args.variants.split(","):
        t_start = time.perf_counter()
        if variant == "dense":
            base = load_baseline(args.model)[0]
        else:
            base = pruned_model(args.model, data, cache, args.retrain_n, args.retrain_epochs)
        tag = f"{args.model}_{variant}"
        test = (data.test[0][: args.test_n], data.test[1][: args.test_n])
        base_acc = acc(base, data.test)
        weights = sum(m.weight.numel() for m in shareable_layers(base).values())
        nnz = sum(int((m.weight != 0).sum()) for m in shareable_layers(base).values())
        print(f"{tag}: unshared accuracy {base_acc:.4f}, density {nnz / weights:.3%}", flush=True)
        result: dict[str, Any] = {
            "model": args.model,
            "variant": variant,
            "commit": git_commit(),
            "machine": f"{platform.machine()} CPU, 2 cores shared with ~9 other jobs (timings noisy; ratios from one run)",
            "torch_threads": args.threads,
            "budget": {
                "test_n_part1": args.test_n,
                "finetune": f"1 epoch Adam lr=1e-3 on the first {args.finetune_n} training images",
                "pruned_retrain": f"{args.retrain_epochs} epoch(s) SGD lr=0.01 on {args.retrain_n} images",
            },
            "density": nnz / weights,
            "unshared_acc": base_acc,
            "unshared_acc_test_n": acc(base, test),
            "inits": part_inits(base, data, args, test, tag, out),
            "timing": part_timing(base, tag),
            "lowest_bits": part_lowest_bits(base, data, args, base_acc, tag),
        }
        result["seconds"] = time.perf_counter() - t_start
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_curves(result, out / f"acc_vs_bits_{tag}.png")
        print(f"{tag}: {result['seconds']:.0f}s -> {out / (tag + '.json')}", flush=True)


def plot_curves(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for init in INITS:
        rows = [r for r in result["inits"] if r["init"] == init]
        b = [r["bits"] for r in rows]
        axes[0].semilogy(b, [r["mse"] for r in rows], "o-", ms=3, label=init)
        axes[1].plot(b, [100 * r["acc_shared"] for r in rows], "o-", ms=3, label=init)
        axes[2].plot(b, [100 * r["acc_finetuned"] for r in rows], "o-", ms=3, label=init)
    for ax, title in zip(
        axes, ["quantisation MSE", "accuracy, shared (%)", "accuracy, fine-tuned (%)"], strict=True
    ):
        ax.set_title(f"{result['model']} {result['variant']}: {title}", fontsize=9)
        ax.set_xlabel("bits per weight (all layers)")
        if "accuracy" in title:
            ax.axhline(100 * result["unshared_acc_test_n"], color="k", lw=0.8, ls="--")
            ax.set_ylim(
                max(0, 100 * result["unshared_acc_test_n"] - 15),
                100 * result["unshared_acc_test_n"] + 2,
            )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render(out: Path) -> None:
    """Markdown tables from every result JSON in ``out``."""
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        tag = f"{r['model']} {r['variant']}"
        n_test = r["budget"]["test_n_part1"]
        print(
            f"\n#### {tag}: unshared {100 * r['unshared_acc']:.2f}% on 10,000 test images, "
            f"{100 * r['unshared_acc_test_n']:.2f}% on the {n_test:,} used below "
            f"(density {100 * r['density']:.1f}%)\n"
        )
        print("Cells: quantisation MSE · test accuracy (%) shared → after fine-tuning.\n")
        print("| bits | " + " | ".join(INITS) + " |")
        print("|---:|" + "---|" * len(INITS))
        for bits in BITS:
            cells = []
            for init in INITS:
                x = next(z for z in r["inits"] if z["bits"] == bits and z["init"] == init)
                cells.append(
                    f"{x['mse']:.2e} · {100 * x['acc_shared']:.2f} → {100 * x['acc_finetuned']:.2f}"
                )
            print(f"| {bits} | " + " | ".join(cells) + " |")
        print(
            "\noptimal vs linear: MSE ratio linear/optimal; accuracy optimal − linear (points), shared/fine-tuned:"
        )
        cmp = []
        for bits in BITS:
            lin, opt = (
                next(z for z in r["inits"] if z["bits"] == bits and z["init"] == i)
                for i in ("linear", "optimal")
            )
            cmp.append(
                f"{bits}b ×{lin['mse'] / opt['mse']:.2f} {100 * (opt['acc_shared'] - lin['acc_shared']):+.2f}/"
                f"{100 * (opt['acc_finetuned'] - lin['acc_finetuned']):+.2f}"
            )
        print("; ".join(cmp))
        print(
            "\n| layer | n | k | sklearn s | ours kmeans++ s (×) | ours linear s (×) | ours optimal s (×) | SSE optimal/sklearn |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in r["timing"]:
            cells = [
                f"{t[i]['seconds']:.3f} ({t[i]['speedup_vs_sklearn']:.1f}×)"
                for i in ("kmeans++", "linear", "optimal")
            ]
            print(
                f"| {t['layer']} | {t['n']:,} | {t['k']} | {t['sklearn_seconds']:.3f} | "
                + " | ".join(cells)
                + f" | {t['optimal']['sse_vs_sklearn']:.4f} |"
            )
        lb = r["lowest_bits"]
        per = ", ".join(f"{k}={v['bits']}" for k, v in lb["per_layer"].items())
        print(
            f"\nlowest bits within 0.2 points (one layer at a time, optimal): {per}; all together "
            f"{100 * lb['all_layers_acc']:.2f}%, fine-tuned {100 * lb['all_layers_acc_finetuned']:.2f}% "
            f"(unshared {100 * r['unshared_acc']:.2f}%), storage ×{lb['compression']:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="lenet300")
    p.add_argument("--variants", default="dense,pruned")
    p.add_argument("--out", default="benchmarks/results/share")
    p.add_argument("--cache", default="/tmp/sparsenet-bench-share")
    p.add_argument("--test-n", type=int, default=10000, help="test images for part 1")
    p.add_argument("--finetune-n", type=int, default=10000, help="training images for fine-tuning")
    p.add_argument("--retrain-n", type=int, default=60000)
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument(
        "--plot-bits", type=int, default=4, help="histograms for linear init at these bits"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--render", action="store_true", help="print markdown tables from --out and exit"
    )
    args = p.parse_args(argv)
    if args.render:
        render(Path(args.out))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
