"""Low-rank (truncated SVD) factorisation on LeNet-300-100 and LeNet-5, Fashion-MNIST.

For each model and rank rule (parameter budgets, spectral energies):

1. accuracy against parameter reduction, right after the SVD and after fine-tuning through
   ``sparsenet.training.fit`` (``sparsenet.lowrank.finetune``);
2. the same parameter count reached by magnitude pruning, fine-tuned with the same epochs.
   ``sparsenet.prune`` was not on main when this was written, so the peer is
   ``torch.nn.utils.prune.global_unstructured(L1Unstructured)`` over the same layers
   (labelled "magnitude (torch.nn.utils.prune)" in the output);
3. inference time, factorised against dense, at batch 1 and 256, as ratios from one run.

Usage::

    python benchmarks/bench_lowrank.py                       # both models, defaults below
    python benchmarks/bench_lowrank.py --models lenet300 --epochs 1 --quick

Writes ``results.json``, ``accuracy_vs_params_<model>.png`` and spectrum PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import baseline_path, git_commit, load_baseline  # noqa: E402  (benchmarks/_common.py)
from torch import nn
from torch.nn.utils import prune as tprune

from sparsenet.data import fashion_mnist
from sparsenet.io import atomic_write_bytes, write_json
from sparsenet.lowrank import factorize, finetune, format_plan, plan_ranks, plan_table, plot_spectra
from sparsenet.training import default_config, evaluate, fit, seed_everything

RULES = {
    "lenet300": [
        ("budget", 0.3),
        ("budget", 0.2),
        ("budget", 0.1),
        ("budget", 0.05),
        ("energy", 0.9),
    ],
    "lenet5": [("budget", 0.2), ("budget", 0.1)],
}
EPOCHS = {"lenet300": 5, "lenet5": 3}  # fine-tuning epochs (LeNet-5 epochs cost ~10x more)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def magnitude_prune_to(model: nn.Module, layer_names: list[str], target_params: int) -> int:
    """Global L1 pruning of the weights of ``layer_names`` until ``target_params`` remain
    (weights + biases of those layers); returns the number of weights removed."""
    layers = [model.get_submodule(n) for n in layer_names]
    weights = sum(m.weight.numel() for m in layers)
    biases = sum(m.bias.numel() for m in layers if m.bias is not None)
    remove = max(0, weights + biases - target_params)
    tprune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=tprune.L1Unstructured, amount=remove
    )
    return remove


def time_forward(models: dict[str, nn.Module], x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median seconds per forward, interleaving the models so load changes hit them alike."""
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            for _ in range(3):
                m(x)
        for _ in range(reps):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                times[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def plot_tradeoff(rows: list[dict[str, Any]], dense_acc: float, name: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
    for key, label, mk in (
        ("acc_finetuned", "low-rank, fine-tuned", "o-"),
        ("acc_svd", "low-rank, no fine-tuning", "o:"),
        ("prune_acc_finetuned", "magnitude (torch prune), fine-tuned", "s-"),
    ):
        pts = sorted((r["reduction_model"], r[key]) for r in rows if "budget" in r["rule"])
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], mk, label=label)
    ax.axhline(100 * dense_acc, color="k", lw=0.8, ls="--", label="dense")
    ax.axhline(100 * dense_acc - 0.5, color="grey", lw=0.8, ls=":", label="dense − 0.5 pt")
    ax.set_xlabel("parameter reduction of the model (×)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xscale("log")
    ax.set_ylim(max(50, 100 * dense_acc - 15), 100 * dense_acc + 1)
    ax.set_title(f"{name}, Fashion-MNIST: budget sweep", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def bench_model(name: str, args: argparse.Namespace, data: Any, out: Path) -> dict[str, Any]:
    dense, meta = load_baseline(name)
    x_test, y_test = data.test
    train = data.train
    if args.train_subset:
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(train[0]), generator=g)[: args.train_subset]
        train = (train[0][idx], train[1][idx])
    dense_acc = evaluate(dense, (x_test, y_test))["accuracy"]
    base = default_config(name, "fashion-mnist")
    epochs = args.epochs if args.epochs is not None else EPOCHS[name]
    cfg = base.replace(epochs=epochs, lr=base.lr * args.lr_scale, quiet=True, seed=0)
    print(
        f"\n== {name}: dense test accuracy {dense_acc:.4f}, {n_params(dense):,} parameters; "
        f"fine-tuning {epochs} epochs lr={cfg.lr:g} on {len(train[0])} samples"
    )
    rules = RULES[name][:2] if args.quick else RULES[name]
    rows: list[dict[str, Any]] = []
    timing_models: dict[str, nn.Module] = {"dense": dense}
    for kind, value in rules:
        model = copy.deepcopy(dense)
        plan = plan_ranks(model, **{kind: value})
        factorize(model, plan=plan)
        fact = [p for p in plan if p.rank is not None]
        acc_svd = evaluate(model, (x_test, y_test))["accuracy"]
        seed_everything(0)
        t0 = time.perf_counter()
        finetune(model, train, cfg)
        ft_s = time.perf_counter() - t0
        acc_ft = evaluate(model, (x_test, y_test))["accuracy"]
        # Extra shuffling seeds for the low-rank fine-tuning (seed 0 above is the reported one).
        acc_seeds = [acc_ft]
        for seed in args.seeds[1:]:
            again = copy.deepcopy(dense)
            factorize(again, plan=plan)
            seed_everything(seed)
            finetune(again, train, cfg.replace(seed=seed))
            acc_seeds.append(evaluate(again, (x_test, y_test))["accuracy"])
        # Peer: magnitude pruning of the same layers to the same parameter count.
        peer = copy.deepcopy(dense)
        names = [p.name for p in plan]
        table = plan_table(plan)
        magnitude_prune_to(peer, names, table["params_after"])
        p_acc = evaluate(peer, (x_test, y_test))["accuracy"]
        seed_everything(0)
        fit(peer, train, cfg)
        p_acc_ft = evaluate(peer, (x_test, y_test))["accuracy"]
        row = {
            "rule": f"{kind}={value:g}",
            "ranks": {p.name: p.rank for p in plan},
            "factorized_layers_params_before": sum(p.params_before for p in fact),
            "factorized_layers_params_after": sum(p.params_after for p in fact),
            "reduction_factorized_layers": sum(p.params_before for p in fact)
            / max(1, sum(p.params_after for p in fact)),
            "model_params_before": n_params(dense),
            "model_params_after": n_params(model),
            "reduction_model": n_params(dense) / n_params(model),
            "acc_dense": dense_acc,
            "acc_svd": acc_svd,
            "acc_finetuned": acc_ft,
            "drop_points": 100 * (dense_acc - acc_ft),
            "seeds": args.seeds,
            "acc_finetuned_per_seed": acc_seeds,
            "drop_points_mean_over_seeds": 100 * (dense_acc - sum(acc_seeds) / len(acc_seeds)),
            "finetune_seconds": ft_s,
            "prune_params_after": table["params_after"] + n_params(dense) - table["params_before"],
            "prune_acc": p_acc,
            "prune_acc_finetuned": p_acc_ft,
            "plan": table["layers"],
        }
        rows.append(row)
        timing_models[row["rule"]] = model
        print(format_plan(plan))
        print(
            f"{row['rule']}: {row['reduction_factorized_layers']:.1f}x in factorised layers, "
            f"{row['reduction_model']:.1f}x model; acc svd {acc_svd:.4f} -> fine-tuned {acc_ft:.4f} "
            f"(drop {row['drop_points']:.2f} pt, mean over seeds {row['drop_points_mean_over_seeds']:.2f}); magnitude prune same count {p_acc:.4f} -> {p_acc_ft:.4f}"
        )
        if kind == "budget" and value == 0.2:
            plot_spectra(plan, out, prefix=f"{name}_")
    atomic_write_bytes(out / f"accuracy_vs_params_{name}.png", plot_tradeoff(rows, dense_acc, name))
    timing: dict[str, Any] = {}
    for batch in (1, 256):
        x = x_test[:batch]
        reps = 300 if batch == 1 else 40
        t = time_forward(timing_models, x, reps)
        timing[f"batch{batch}"] = {
            "dense_ms": 1e3 * t["dense"],
            **{
                k: {"ms": 1e3 * v, "speedup_vs_dense": t["dense"] / v}
                for k, v in t.items()
                if k != "dense"
            },
        }
        print(
            f"batch {batch}: dense {1e3 * t['dense']:.3f} ms; "
            + ", ".join(f"{k} {t['dense'] / v:.2f}x" for k, v in t.items() if k != "dense")
        )
    return {
        "dense_acc": dense_acc,
        "baseline": str(baseline_path(name)),
        "baseline_meta_acc": meta.get("test_accuracy"),
        "finetune": {
            "epochs": epochs,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "optimizer": cfg.optimizer,
            "schedule": cfg.schedule,
            "train_samples": len(train[0]),
        },
        "rows": rows,
        "timing": timing,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 5 / 3)")
    ap.add_argument("--lr-scale", type=float, default=0.5, help="fine-tuning lr = recipe lr × this")
    ap.add_argument("--train-subset", type=int, default=0, help="fine-tune on this many samples")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--seeds",
        type=lambda t: [int(v) for v in t.split(",")],
        default=[0],
        help="fine-tuning seeds for the low-rank rows, e.g. 0,1,2 (the first is the reported one)",
    )
    ap.add_argument("--quick", action="store_true", help="two rules per model")
    ap.add_argument("--out", default="benchmarks/results/lowrank")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = fashion_mnist()
    header = {
        "benchmark": "lowrank",
        "commit": git_commit(),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), 2-core "
        "machine shared with other jobs at the time (timings noisy; ratios from one run)",
        "torch": torch.__version__,
        "command": "PYTHONPATH=. python benchmarks/bench_lowrank.py " + " ".join(sys.argv[1:]),
        "peer": "magnitude pruning = torch.nn.utils.prune.global_unstructured(L1Unstructured) "
        "over the same layers (sparsenet.prune not on main yet)",
    }
    for name in args.models.split(","):
        t0 = time.perf_counter()
        res = {**header, "model": name, **bench_model(name, args, data, out)}
        res["seconds"] = time.perf_counter() - t0
        json.dumps(res)  # fail loudly here if something is not JSON-able
        write_json(out / f"results_{name}.json", res)
        print(f"wrote {out / f'results_{name}.json'} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
