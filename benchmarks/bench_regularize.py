"""Sparse regularisation on LeNet-300-100 / Fashion-MNIST: three measurements.

1. Han et al.'s finding (2015): L1 beats L2 when pruning without retraining, L2 beats L1
   with retraining. Models trained with no penalty, L1 and L2 are magnitude-pruned (one
   global threshold over all weight layers) to a range of sparsities, then evaluated as
   pruned and after a short masked retraining (same penalty as in training).
2. Activation sparsity against accuracy: Σ log(1 + z²) on the hidden activations at several
   λ, the truncated sigmoid at several τ, and a few peers (thresholded ReLU, L1 on
   activations). The mark to beat: > 80% zeros with at most 1 point lost.
3. Cost: seconds per epoch with each penalty, as a ratio to plain training, measured
   interleaved in one run.

Usage::

    nice -n 5 python benchmarks/bench_regularize.py            # the README figures
    python benchmarks/bench_regularize.py --quick              # smoke run, ~1 min

Writes ``bench_regularize.json`` and two PNGs under ``--out``. The local magnitude-pruning
step (a mask re-applied after each optimizer step) stands in for ``sparsenet.prune``, which
is being written in parallel; swap it in once merged.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import git_commit  # noqa: E402  (benchmarks/_common.py)

from sparsenet import LeNet300, TrainConfig, evaluate, fashion_mnist, fit  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.regularize import (  # noqa: E402
    ActivationPenalty,
    WeightPenalty,
    activation_sparsity,
    replace_activations,
)
from sparsenet.training import Callback, TrainState  # noqa: E402

SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]


# ---------------------------------------------------------------- magnitude pruning (local)
def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """One global |w| threshold over all Linear weights: the smallest ``sparsity`` go."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    flat = torch.cat([m.weight.detach().abs().reshape(-1) for m in layers.values()])
    k = int(round(sparsity * flat.numel()))
    if k == 0:
        return {n: torch.ones_like(m.weight) for n, m in layers.items()}
    thr = flat.kthvalue(k).values
    return {n: (m.weight.detach().abs() > thr).float() for n, m in layers.items()}


class KeepMask(Callback):
    """Re-apply fixed masks after every optimizer step, so pruned weights stay zero."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = masks

    def apply(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, mask in self.masks.items():
                model.get_submodule(name).weight.mul_(mask)

    def on_train_begin(self, state: TrainState) -> None:
        self.apply(state.model)

    def on_step_end(self, state: TrainState) -> None:
        self.apply(state.model)


# ---------------------------------------------------------------- helpers
def clone(model: nn.Module) -> nn.Module:
    m = LeNet300()
    replace_like(m, model)
    m.load_state_dict(model.state_dict())
    return m


def replace_like(target: nn.Module, source: nn.Module) -> None:
    for name, mod in source.named_children():
        if getattr(type(mod), "transform_kind", None) == "activation":
            target.set_submodule(name, type(mod)(**_ctor(mod)))
        elif isinstance(mod, nn.Sigmoid):
            target.set_submodule(name, nn.Sigmoid())


def _ctor(mod: nn.Module) -> dict[str, Any]:
    kw: dict[str, Any] = {"tau": mod.tau}  # type: ignore[dict-item]
    if hasattr(mod, "mode"):
        kw["mode"] = mod.mode
    return kw


def weight_callbacks(kind: str, lam: float) -> list[Callback]:
    return [] if kind == "none" else [WeightPenalty(kind, lam)]


def train_model(
    data: Any,
    cfg: TrainConfig,
    callbacks: list[Callback],
    activation: str | None = None,
    sigmoid: bool = False,
) -> tuple[nn.Module, float]:
    torch.manual_seed(cfg.seed)
    m = LeNet300()
    if sigmoid:
        m.relu1, m.relu2 = nn.Sigmoid(), nn.Sigmoid()
    if activation:
        replace_activations(m, activation)
    t0 = time.perf_counter()
    fit(m, data.train, cfg, callbacks=callbacks)
    return m, time.perf_counter() - t0


def acc(model: nn.Module, data: Any) -> float:
    return evaluate(model, data.test)["accuracy"]


# ---------------------------------------------------------------- 1. Han's finding
def han(data: Any, cfg: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    regs = {"none": ("none", 0.0)}
    regs.update({f"l1 λ={lam:g}": ("l1", lam) for lam in args.l1})
    regs.update({f"l2 λ={lam:g}": ("l2", lam) for lam in args.l2})
    out: dict[str, Any] = {"regularisers": {k: v[1] for k, v in regs.items()}, "runs": {}}
    retrain_cfg = cfg.replace(epochs=args.retrain_epochs, lr=args.retrain_lr)
    for name, (kind, lam) in regs.items():
        model, secs = train_model(data, cfg, weight_callbacks(kind, lam))
        dense = acc(model, data)
        rows = []
        for s in args.sparsities:
            masks = magnitude_masks(model, s)
            pruned = clone(model)
            KeepMask(masks).apply(pruned)
            a0 = acc(pruned, data)
            fit(
                pruned,
                data.train,
                retrain_cfg,
                callbacks=[KeepMask(masks), *weight_callbacks(kind, lam)],
            )
            a1 = acc(pruned, data)
            rows.append({"sparsity": s, "no_retrain": a0, "retrain": a1})
            print(
                f"  {name:>4} λ={lam:g} sparsity {s:.2f}: no retrain {a0:.4f}  retrain {a1:.4f}",
                flush=True,
            )
        out["runs"][name] = {
            "lam": lam,
            "dense_accuracy": dense,
            "train_seconds": secs,
            "pruned": rows,
        }
        if name == "none":
            out["_baseline_model"] = model
        print(f"{name}: dense {dense:.4f} ({secs:.0f}s)", flush=True)
    return out


# ---------------------------------------------------------------- 2. activation sparsity
def act_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = [{"label": "relu (no penalty)", "family": "baseline"}]
    runs += [
        {"label": f"log1p λ={lam:g}", "family": "log1p", "lam": lam, "penalty": ("log1p", lam)}
        for lam in args.log1p
    ]
    runs.append({"label": "sigmoid", "family": "truncated-sigmoid", "tau": 0.0, "sigmoid": True})
    runs += [
        {
            "label": f"truncated-sigmoid τ={tau:g}",
            "family": "truncated-sigmoid",
            "tau": tau,
            "activation": f"truncated-sigmoid:{tau}",
        }
        for tau in args.taus
    ]
    runs += [
        {
            "label": f"truncated-sigmoid τ={tau:g} straight-through",
            "family": "truncated-sigmoid (straight-through)",
            "tau": tau,
            "activation": f"truncated-sigmoid:{tau}:ste",
        }
        for tau in args.ste_taus
    ]
    runs += [
        {
            "label": f"thresholded-relu τ={tau:g}",
            "family": "thresholded-relu",
            "tau": tau,
            "activation": f"thresholded-relu:{tau}",
        }
        for tau in args.relu_taus
    ]
    runs += [
        {"label": f"l1-act λ={lam:g}", "family": "l1-act", "lam": lam, "penalty": ("l1", lam)}
        for lam in args.l1_act
    ]
    runs += [
        {
            "label": f"truncated-sigmoid τ={tau:g} + log1p λ={lam:g}",
            "family": "truncated-sigmoid + log1p",
            "tau": tau,
            "lam": lam,
            "activation": f"truncated-sigmoid:{tau}",
            "penalty": ("log1p", lam),
        }
        for tau, lam in (map(float, c.split(",")) for c in args.combos)
    ]
    return runs


def activations(
    data: Any, cfg: TrainConfig, args: argparse.Namespace, baseline: nn.Module | None
) -> list[dict[str, Any]]:
    results = []
    for run in act_runs(args):
        cbs: list[Callback] = []
        if "penalty" in run:
            kind, lam = run["penalty"]
            cbs.append(ActivationPenalty(kind, lam, ["fc1", "fc2"]))
        # Sigmoid nets learn slowly at the ReLU recipe's lr (72% vs 83% after a 4-epoch
        # probe on 20k samples), so the sigmoid family gets its own lr.
        sig = run["family"].startswith("truncated-sigmoid")
        run_cfg = cfg.replace(lr=args.sigmoid_lr) if sig else cfg
        run["lr"] = run_cfg.lr
        if run["family"] == "baseline" and baseline is not None:
            model, secs = baseline, float("nan")  # the same seed and recipe as part 1's "none"
        else:
            model, secs = train_model(
                data,
                run_cfg,
                cbs,
                activation=run.get("activation"),
                sigmoid=run.get("sigmoid", False),
            )
        rep = activation_sparsity(model, data.x_test)
        row = {
            **{k: v for k, v in run.items() if k not in ("penalty",)},
            "accuracy": acc(model, data),
            "activation_sparsity": rep["total"]["sparsity"],
            "per_layer": {k: v["sparsity"] for k, v in rep["layers"].items()},
            "dead_units": {k: v["dead"] for k, v in rep["layers"].items()},
            "hoyer": {k: round(v["hoyer"], 4) for k, v in rep["layers"].items()},
            "train_seconds": secs,
        }
        results.append(row)
        print(
            f"{row['label']:<28} acc {row['accuracy']:.4f}  act. sparsity {row['activation_sparsity']:.3f}",
            flush=True,
        )
    return results


# ---------------------------------------------------------------- 3. cost
def cost(data: Any, cfg: TrainConfig, repeats: int) -> dict[str, Any]:
    variants: dict[str, Any] = {
        "none": lambda: [],
        "l1": lambda: [WeightPenalty("l1", 1e-5)],
        "l2": lambda: [WeightPenalty("l2", 5e-4)],
        "elastic": lambda: [WeightPenalty("elastic", 1e-5)],
        "group": lambda: [WeightPenalty("group", 1e-4)],
        "log1p-act": lambda: [ActivationPenalty("log1p", 1e-4, ["fc1", "fc2"])],
        "l1-act": lambda: [ActivationPenalty("l1", 1e-4, ["fc1", "fc2"])],
        "kl-act": lambda: [ActivationPenalty("kl", 1e-4, ["fc1", "fc2"])],
        "truncated-sigmoid": "truncated-sigmoid:0.1",
        "sigmoid": "sigmoid",
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    one = cfg.replace(epochs=1)
    for _ in range(repeats):  # interleaved, so load changes hit every variant alike
        for name, v in variants.items():
            if isinstance(v, str):
                _, secs = train_model(
                    data, one, [], activation=v if v != "sigmoid" else None, sigmoid=v == "sigmoid"
                )
            else:
                _, secs = train_model(data, one, v())
            times[name].append(secs)
    base = statistics.median(times["none"])
    table = {
        k: {"median_seconds": statistics.median(t), "ratio": statistics.median(t) / base, "runs": t}
        for k, t in times.items()
    }
    table["truncated-sigmoid"]["ratio_to_sigmoid"] = (
        table["truncated-sigmoid"]["median_seconds"] / table["sigmoid"]["median_seconds"]
    )
    for k, r in table.items():
        print(f"{k:<18} {r['median_seconds']:.2f}s  x{r['ratio']:.2f}", flush=True)
    return {"samples": len(data.x_train), "repeats": repeats, "variants": table}


# ---------------------------------------------------------------- plots
def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "han" in result:
        runs = result["han"]["runs"]
        shades = {
            "none": iter(["tab:gray"]),
            "l1": iter(["tab:cyan", "tab:blue", "navy"]),
            "l2": iter(["tab:orange", "tab:red", "darkred"]),
        }
        colours = {name: next(shades[name.split()[0]], "k") for name in runs}
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
        for name, run in runs.items():
            xs = [r["sparsity"] * 100 for r in run["pruned"]]
            for ax in (left, right):
                ax.plot(
                    xs,
                    [100 * r["retrain"] for r in run["pruned"]],
                    "-o",
                    ms=3,
                    color=colours[name],
                    label=f"{name}, retrained",
                )
            left.plot(
                xs,
                [100 * r["no_retrain"] for r in run["pruned"]],
                "--",
                marker="x",
                ms=3,
                color=colours[name],
                label=f"{name}, no retrain",
            )
        left.set_title("all runs (dashed: pruned, not retrained)")
        right.set_title("zoom: retrained (2 epochs, mask fixed)")
        right.set_xlim(78, 100)
        right.set_ylim(78, 90)
        for ax in (left, right):
            ax.set_xlabel("weights pruned (%), one global |w| threshold")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
        left.legend(fontsize=7)
        fig.suptitle("LeNet-300-100 / Fashion-MNIST: magnitude pruning after L1 / L2 training")
        fig.tight_layout()
        fig.savefig(out / "han_l1_l2_pruning.png", dpi=110)
        plt.close(fig)
    if "activations" in result:
        rows = result["activations"]
        base = next(r for r in rows if r["family"] == "baseline")["accuracy"]
        low = 100 * base - 9
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        markers = {
            "baseline": "*",
            "log1p": "o",
            "l1-act": "D",
            "thresholded-relu": "^",
            "truncated-sigmoid": "s",
            "truncated-sigmoid (straight-through)": "v",
            "truncated-sigmoid + log1p": "P",
        }
        off = []
        for fam, mk in markers.items():
            pts = [r for r in rows if r["family"] == fam]
            if not pts:
                continue
            xs = [100 * r["activation_sparsity"] for r in pts]
            ys = [100 * r["accuracy"] for r in pts]
            ax.plot(xs, ys, marker=mk, ls="-" if len(pts) > 1 else "", label=fam, ms=6)
            for r, x, y in zip(pts, xs, ys, strict=True):
                tag = f"τ={r['tau']:g}" if "tau" in r else (f"λ={r['lam']:g}" if "lam" in r else "")
                if y < low:
                    off.append(f"{r['label']}: {y:.1f}%")
                else:
                    ax.annotate(tag, (x, y), fontsize=6, xytext=(2, -9), textcoords="offset points")
        ax.axvline(80, color="k", lw=0.6, ls=":")
        ax.axhline(100 * base - 1, color="k", lw=0.6, ls=":")
        ax.set_ylim(low, 100 * base + 1)
        ax.set_xlabel("activation sparsity of fc1+fc2 outputs (% exact zeros, test set)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            "Activation sparsity vs accuracy (mark: right of 80%, above the dotted line)",
            fontsize=10,
        )
        if off:
            ax.text(
                0.01, 0.02, "below the chart: " + "; ".join(off), transform=ax.transAxes, fontsize=6
            )
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "activation_sparsity.png", dpi=110)
        plt.close(fig)


# ---------------------------------------------------------------- tables
def tables(result: dict[str, Any]) -> str:
    """Markdown tables of every part present in ``result``."""
    out: list[str] = []
    if "han" in result:
        runs = result["han"]["runs"]
        names = list(runs)
        out.append(
            "| weights pruned | " + " | ".join(f"{n}: no retrain / retrain" for n in names) + " |"
        )
        out.append("|---:|" + "---:|" * len(names))
        out.append(
            "| 0 (dense) | "
            + " | ".join(f"{100 * runs[n]['dense_accuracy']:.2f}" for n in names)
            + " |"
        )
        for i, row in enumerate(runs[names[0]]["pruned"]):
            cells = []
            for n in names:
                r = runs[n]["pruned"][i]
                cells.append(f"{100 * r['no_retrain']:.2f} / {100 * r['retrain']:.2f}")
            out.append(f"| {100 * row['sparsity']:g}% | " + " | ".join(cells) + " |")
        out.append("")
    if "activations" in result:
        rows = result["activations"]
        base = next(r for r in rows if r["family"] == "baseline")["accuracy"]
        out.append(
            "| model | lr | test acc. | Δ vs ReLU (pt) | act. sparsity | fc1 | fc2 | dead fc1/fc2 | mark |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|:---:|")
        for r in rows:
            delta = 100 * (r["accuracy"] - base)
            mark = "yes" if r["activation_sparsity"] > 0.8 and delta >= -1 else ""
            pl, dead = r["per_layer"], r["dead_units"]
            out.append(
                f"| {r['label']} | {r.get('lr', '')} | {100 * r['accuracy']:.2f} | {delta:+.2f} "
                f"| {100 * r['activation_sparsity']:.1f}% | {100 * pl.get('fc1', 0):.1f}% "
                f"| {100 * pl.get('fc2', 0):.1f}% | {dead.get('fc1', 0)}/{dead.get('fc2', 0)} | {mark} |"
            )
        out.append("")
    if "cost" in result:
        out.append("| variant | s / epoch (median) | ratio to plain |")
        out.append("|---|---:|---:|")
        for k, r in result["cost"]["variants"].items():
            out.append(f"| {k} | {r['median_seconds']:.2f} | {r['ratio']:.2f} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/regularize"))
    p.add_argument("--train-samples", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument("--retrain-lr", type=float, default=0.01)
    p.add_argument("--l1", type=float, nargs="+", default=[2e-5, 1e-4])
    p.add_argument("--l2", type=float, nargs="+", default=[5e-4, 2e-3])
    p.add_argument("--sparsities", type=float, nargs="+", default=SPARSITIES)
    p.add_argument("--log1p", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    p.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.6])
    p.add_argument("--ste-taus", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    p.add_argument("--sigmoid-lr", type=float, default=0.3)
    p.add_argument("--relu-taus", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument(
        "--combos",
        nargs="*",
        default=["0.5,1e-3", "0.5,3e-3"],
        help="TAU,LAMBDA pairs: truncated sigmoid plus the log1p penalty",
    )
    p.add_argument("--l1-act", type=float, nargs="+", default=[1e-3])
    p.add_argument("--cost-samples", type=int, default=20000)
    p.add_argument("--cost-repeats", type=int, default=3)
    p.add_argument("--parts", nargs="+", default=["han", "activations", "cost"])
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the machine is shared)"
    )
    p.add_argument("--quick", action="store_true", help="10k samples, 2 epochs, fewer points")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNGs from the JSON")
    args = p.parse_args(argv)
    if args.plot_only:
        saved = json.loads((Path(args.out) / "bench_regularize.json").read_text())
        plot(saved, Path(args.out))
        print(tables(saved))
        return 0
    if args.quick:
        args.train_samples, args.epochs, args.retrain_epochs = 10000, 2, 1
        args.sparsities, args.log1p, args.taus = [0.8, 0.95], [1e-3, 1e-2], [0.1, 0.3]
        args.l1, args.l2 = [1e-4], [5e-4]
        args.relu_taus, args.l1_act, args.cost_samples, args.cost_repeats = [0.25], [], 5000, 1
        args.combos, args.ste_taus = ["0.5,1e-2"], [0.6]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = fashion_mnist()
    data = full.subset(args.train_samples)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=128,
        lr=0.05,
        momentum=0.9,
        schedule="cosine",
        quiet=True,
        seed=0,
    )
    result: dict[str, Any] = {
        "benchmark": "regularize",
        "commit": git_commit(),
        "machine": f"2-core CPU ({platform.processor() or platform.machine()}), shared with other "
        "jobs at the time; torch threads=" + str(args.threads) + "; timings are noisy, ratios "
        "measured interleaved in one run are what counts",
        "torch": torch.__version__,
        "data": {"name": "fashion-mnist", "train": len(data.x_train), "test": len(data.x_test)},
        "train_config": {
            k: getattr(cfg, k)
            for k in ("epochs", "batch_size", "lr", "optimizer", "momentum", "schedule", "seed")
        },
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "command": "python benchmarks/bench_regularize.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    name = "bench_regularize_quick.json" if args.quick else "bench_regularize.json"
    parts_run = {part: result["commit"] for part in args.parts}
    if (out / name).exists() and set(args.parts) != {"han", "activations", "cost"}:
        # Re-running some parts: keep the others from the previous run, and say so.
        old = json.loads((out / name).read_text())
        for part in {"han", "activations", "cost"} - set(args.parts):
            if part in old:
                result[part] = old[part]
                parts_run[part] = old.get("parts_commit", {}).get(part, old.get("commit"))
    result["parts_commit"] = parts_run
    t_start = time.perf_counter()
    baseline = None
    if "han" in args.parts:
        print("== 1. Han's finding: L1 vs L2 under magnitude pruning", flush=True)
        result["han"] = han(data, cfg, args)
        baseline = result["han"].pop("_baseline_model")
        write_json(out / name, result)
    if "activations" in args.parts:
        print("== 2. activation sparsity vs accuracy", flush=True)
        result["activations"] = activations(data, cfg, args, baseline)
        write_json(out / name, result)
    if "cost" in args.parts:
        print("== 3. cost per epoch, ratio to plain training", flush=True)
        result["cost"] = cost(full.subset(args.cost_samples), cfg, args.cost_repeats)
    result["total_seconds"] = time.perf_counter() - t_start
    write_json(out / name, result)
    if not args.quick:
        plot(result, out)
    print(tables(result))
    print(json.dumps({"written": str(out / name)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
