"""Pruning on LeNet-300-100 and LeNet-5 / Fashion-MNIST: OBD vs magnitude vs random, retraining, cost, peer.

1. Without retraining: test loss/accuracy against global sparsity 50–95% for OBD (LM form),
   magnitude and random (LeCun et al. 1990's comparison).
2. Iterative prune → retrain to 92% sparsity (Han et al. 2015's 12×), magnitude, global
   ranking, K rounds × N epochs at lr = training lr / 10; the peer is
   ``torch.nn.utils.prune.global_unstructured(L1Unstructured)`` on the same schedule and the
   same ``fit`` retraining. Accuracy and checkpoint sizes side by side.
3. Cost: OBD's Hessian pass over the training set / one gradient pass over the same data.
4. Per-layer sensitivity (Han's Figure 6), PNG per network.

Uses the dense baselines of README (trained on first use by benchmarks/_common.py). Run::

    nice -n 5 python benchmarks/bench_prune.py --out benchmarks/results/prune
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as tprune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import git_commit, load_baseline  # noqa: E402

from sparsenet.checkpoint import model_payload  # noqa: E402
from sparsenet.data import fashion_mnist  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.prune import (  # noqa: E402
    OBD,
    Criterion,
    PruneSchedule,
    bake,
    hessian_diagonal,
    prunable_targets,
    prune,
    prune_iterative,
    sensitivity,
    sparsity_report,
)
from sparsenet.prune.sensitivity import plot_sensitivity  # noqa: E402
from sparsenet.training import TrainConfig, default_config, evaluate, fit, seed_everything  # noqa: E402

SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


class Fixed(Criterion):
    """Scores computed once on the dense model (so a sweep pays for OBD's pass once)."""

    def __init__(self, name: str, scores: list[torch.Tensor]) -> None:
        self.name, self._scores = name, scores

    def scores(self, model: nn.Module, targets: list[Any]) -> list[torch.Tensor]:
        return self._scores


def sweep(model: nn.Module, data: Any, obd_samples: int) -> dict[str, Any]:
    """Part 1: loss/accuracy vs sparsity, no retraining."""
    x, y = data.train
    targets = prunable_targets(model)
    t0 = time.perf_counter()
    obd_scores = OBD((x[:obd_samples], y[:obd_samples]), form="lm").scores(model, targets)
    obd_seconds = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    crits = {
        "obd": obd_scores,
        "magnitude": [t.value.detach().abs() for t in targets],
        "random": [torch.rand(t.value.shape, generator=gen) for t in targets],
    }
    rows = []
    for s in SPARSITIES:
        for name, scores in crits.items():
            m = copy.deepcopy(model)
            prune(m, Fixed(name, scores), sparsity=s)
            ev = evaluate(m, data.test)
            rows.append({"method": name, "sparsity": s, "loss": ev["loss"], "accuracy": ev["accuracy"],
                         "layers": {r["name"]: r["sparsity"] for r in sparsity_report(m)["layers"]}})
        # OBD's ranking *within* layers, given global magnitude's per-layer budget: separates
        # the within-layer ordering from the cross-layer allocation.
        budget = next(r["layers"] for r in rows if r["method"] == "magnitude" and r["sparsity"] == s)
        m = copy.deepcopy(model)
        prune(m, Fixed("obd", obd_scores), per_layer=budget)
        ev = evaluate(m, data.test)
        rows.append({"method": "obd@magnitude-budget", "sparsity": s, "loss": ev["loss"],
                     "accuracy": ev["accuracy"], "layers": budget})
    return {"rows": rows, "obd_hessian_seconds": obd_seconds, "obd_samples": obd_samples}


def grad_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(x), bs):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[i : i + bs]), y[i : i + bs]).backward()
    return time.perf_counter() - t0


def cost(model: nn.Module, data: Any, n: int, bs: int, repeats: int) -> dict[str, Any]:
    """Part 3: OBD Hessian pass vs one gradient pass, same data, same batch size (min of repeats)."""
    x, y = data.x_train[:n], data.y_train[:n]
    g, h_lm, h_full = [], [], []
    for _ in range(repeats):
        g.append(grad_pass(model, x, y, bs))
        t0 = time.perf_counter()
        hessian_diagonal(model, (x, y), form="lm", batch_size=bs)
        h_lm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hessian_diagonal(model, (x, y), form="full", batch_size=bs)
        h_full.append(time.perf_counter() - t0)
    return {
        "samples": n,
        "batch_size": bs,
        "gradient_pass_s": min(g),
        "obd_lm_s": min(h_lm),
        "obd_full_s": min(h_full),
        "ratio_lm": min(h_lm) / min(g),
        "ratio_full": min(h_full) / min(g),
    }


def overhead(model: nn.Module, data: Any, n: int = 20_000, repeats: int = 3) -> dict[str, Any]:
    """Seconds per training epoch (n samples): masked (ours) vs torch.nn.utils.prune vs dense.

    The three run interleaved and the minimum of ``repeats`` is kept, so load from other jobs
    on the shared machine hits them alike.
    """
    train = (data.x_train[:n], data.y_train[:n])
    ours = copy.deepcopy(model)
    prune(ours, "magnitude", sparsity=0.9)
    peer = copy.deepcopy(model)
    layers = [(m, "weight") for m in peer.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    tprune.global_unstructured(layers, pruning_method=tprune.L1Unstructured, amount=0.9)
    cfg = TrainConfig(epochs=1, lr=1e-3, quiet=True)
    times: dict[str, list[float]] = {"ours": [], "peer": [], "dense": []}
    for _ in range(repeats):
        for name, m in (("ours", ours), ("peer", peer), ("dense", copy.deepcopy(model))):
            t0 = time.perf_counter()
            fit(m, train, cfg)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"samples": n, "epoch_s": best, "ours_over_peer": best["ours"] / best["peer"],
            "ours_over_dense": best["ours"] / best["dense"]}


def schedule(final: float, steps: int) -> list[float]:
    return [1 - (1 - final) ** (k / steps) for k in range(1, steps + 1)]


def nbytes(obj: Any) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def retrain(model: nn.Module, name: str, data: Any, final: float, steps: int, epochs: int,
            n_train: int | None, lr: float | None, peer_too: bool = True) -> dict[str, Any]:
    """Part 2 and 4: ours (masks) vs torch.nn.utils.prune, same schedule, same fit."""
    train = data.train if n_train is None else (data.x_train[:n_train], data.y_train[:n_train])
    cfg = default_config(name).replace(quiet=True)
    retrain_cfg = cfg.replace(epochs=epochs, lr=lr or cfg.lr / 10)
    out: dict[str, Any] = {"final_sparsity": final, "steps": steps, "retrain_epochs": epochs,
                           "retrain_lr": retrain_cfg.lr, "train_samples": len(train[0])}
    dense_state = nbytes(model.state_dict())

    # ours
    ours = copy.deepcopy(model)
    t0 = time.perf_counter()
    hist = prune_iterative(ours, train, "magnitude", sparsity=final, config=cfg, val=data.test,
                           schedule=PruneSchedule(steps=steps, retrain_epochs=epochs,
                                                  lr=retrain_cfg.lr)).history
    out["ours"] = {
        "seconds": time.perf_counter() - t0,
        "accuracy": evaluate(ours, data.test)["accuracy"],
        "sparsity": sparsity_report(ours)["sparsity"],
        "rounds": [{k: v for k, v in h.items() if k != "fit"} for h in hist],
        "checkpoint_bytes": nbytes(model_payload(ours)),
        "state_dict_bytes": nbytes(ours.state_dict()),
    }
    out["ours"]["baked_bytes"] = nbytes(model_payload(bake(copy.deepcopy(ours))))

    out["dense_state_dict_bytes"] = dense_state
    if not peer_too:
        return out
    # peer: torch.nn.utils.prune, global L1 ranking, same sparsity steps and retraining
    peer = copy.deepcopy(model)
    params = [(m, "weight") for m in peer.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    total = sum(m.weight.numel() for m, _ in params)
    done = 0
    rounds = []
    t0 = time.perf_counter()
    for s in schedule(final, steps):
        k = round(s * total) - done  # torch's int amount counts among the still-unpruned weights
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=k)
        done += k
        pruned_acc = evaluate(peer, data.test)["accuracy"]
        if epochs:
            fit(peer, train, retrain_cfg)
        rounds.append({"sparsity": done / total, "pruned_acc": pruned_acc,
                       "retrained_acc": evaluate(peer, data.test)["accuracy"]})
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    out["peer"] = {
        "seconds": time.perf_counter() - t0,
        "accuracy": evaluate(peer, data.test)["accuracy"],
        "sparsity": zeros / total,
        "rounds": rounds,
        "state_dict_bytes": nbytes(peer.state_dict()),  # weight_orig + float weight_mask
    }
    for m, t in params:
        tprune.remove(m, t)
    out["peer"]["removed_state_dict_bytes"] = nbytes(peer.state_dict())
    return out


def plot_sweep(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(results)
    fig, axes = plt.subplots(2, len(nets), figsize=(5 * len(nets), 7), squeeze=False)
    for j, net in enumerate(nets):
        rows = results[net]["sweep"]["rows"]
        for method in ("obd", "magnitude", "random", "obd@magnitude-budget"):
            pts = [r for r in rows if r["method"] == method]
            xs = [100 * r["sparsity"] for r in pts]
            ls = "--" if "@" in method else "-"
            axes[0][j].plot(xs, [100 * r["accuracy"] for r in pts], marker="o", ls=ls, label=method)
            axes[1][j].plot(xs, [r["loss"] for r in pts], marker="o", ls=ls, label=method)
        axes[0][j].axhline(100 * results[net]["dense"]["accuracy"], color="grey", ls=":", label="dense")
        axes[0][j].set_title(f"{net}: no retraining")
        axes[0][j].set_ylabel("test accuracy (%)")
        axes[1][j].set_ylabel("test loss")
        axes[1][j].set_yscale("log")
        axes[1][j].set_xlabel("weights pruned (%), global ranking")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/prune")
    ap.add_argument("--nets", default="lenet300,lenet5")
    ap.add_argument("--obd-samples", type=int, default=10_000)
    ap.add_argument("--steps", default="lenet300=4,lenet5=3", help="pruning rounds, per net")
    ap.add_argument("--retrain-epochs", default="lenet300=3,lenet5=2")
    ap.add_argument("--retrain-lr", default="",
                    help="per-net retraining lr, e.g. lenet300=0.01 (default: training lr / 10)")
    ap.add_argument("--retrain-samples", default="lenet300=60000,lenet5=20000",
                    help="training samples used for retraining, per net")
    ap.add_argument("--cost-samples", default="lenet300=60000,lenet5=10000",
                    help="samples of the Hessian/gradient timing, per net")
    ap.add_argument("--sens-samples", default="lenet300=10000,lenet5=5000",
                    help="test samples per sensitivity point, per net")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: sweep,cost,overhead,sens,retrain,peer")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    def per_net(spec: str) -> dict[str, int]:
        return {k: int(v) for k, v in (p.split("=") for p in spec.split(","))}

    epochs, n_retrain = per_net(args.retrain_epochs), per_net(args.retrain_samples)
    steps = per_net(args.steps)
    n_cost, n_sens = per_net(args.cost_samples), per_net(args.sens_samples)
    lrs = {k: float(v) for k, v in (p.split("=") for p in args.retrain_lr.split(",") if p)}
    data = fashion_mnist()
    commit = git_commit()
    report: dict[str, Any] = {
        "commit": commit,
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, shared with other jobs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "data": "fashion-mnist (60k train / 10k test)",
        "args": vars(args),
        "nets": {},
    }
    prior = out / "bench_prune.json"
    if prior.exists():  # parts run separately (--skip) merge into one report
        import json

        report["nets"] = json.loads(prior.read_text()).get("nets", {})
    for net in args.nets.split(","):
        seed_everything(0)
        model, _ = load_baseline(net)
        res: dict[str, Any] = report["nets"].get(net, {})
        res["dense"] = evaluate(model, data.test)
        print(f"\n== {net}: dense test accuracy {res['dense']['accuracy']:.4f}", flush=True)
        if "sweep" not in skip:
            res["sweep"] = sweep(model, data, args.obd_samples)
            methods = ("obd", "magnitude", "random", "obd@magnitude-budget")
            print(f"{'sparsity':>8} " + " ".join(f"{m[:12] + ' acc/loss':>22}" for m in methods))
            for s in SPARSITIES:
                cells = {r["method"]: r for r in res["sweep"]["rows"] if r["sparsity"] == s}
                print(f"{s:>8.0%} " + " ".join(
                    f"{cells[m]['accuracy']:>12.4f}/{cells[m]['loss']:<9.3f}" for m in methods))
        if "cost" not in skip:
            res["cost"] = cost(model, data, n_cost[net], 256, repeats=2)
            c = res["cost"]
            print(f"cost over {c['samples']} samples: gradient pass {c['gradient_pass_s']:.2f}s, "
                  f"OBD lm {c['obd_lm_s']:.2f}s ({c['ratio_lm']:.2f}x), full {c['obd_full_s']:.2f}s "
                  f"({c['ratio_full']:.2f}x)", flush=True)
        if "overhead" not in skip:
            res["overhead"] = o = overhead(model, data)
            print(f"training epoch ({o['samples']} samples): ours {o['epoch_s']['ours']:.2f}s, "
                  f"torch prune {o['epoch_s']['peer']:.2f}s, dense {o['epoch_s']['dense']:.2f}s",
                  flush=True)
        if "sens" not in skip:
            sens = sensitivity(model, (data.x_test[: n_sens[net]], data.y_test[: n_sens[net]]),
                               "magnitude")
            sens["n"] = min(n_sens[net], len(data.x_test))
            plot_sensitivity(sens, out / f"sensitivity-{net}.png")
            res["sensitivity"] = sens
        if "retrain" not in skip:
            r = retrain(model, net, data, 0.92, steps[net], epochs[net], n_retrain[net],
                        lrs.get(net), peer_too="peer" not in skip)
            res["retrain"] = r
            dense_acc = res["dense"]["accuracy"]
            print(f"iterative to 92% ({steps[net]} x {epochs[net]} epochs, lr {r['retrain_lr']}):")
            for who in [w for w in ("ours", "peer") if w in r]:
                print(f"  {who:<5} acc {r[who]['accuracy']:.4f} (dense {dense_acc:.4f}, "
                      f"{100 * (r[who]['accuracy'] - dense_acc):+.2f} pts), sparsity "
                      f"{r[who]['sparsity']:.4f}, {r[who]['seconds']:.0f}s, state_dict "
                      f"{r[who]['state_dict_bytes']:,} B", flush=True)
            if "peer" in r:
                print(f"  checkpoints: ours masked {r['ours']['checkpoint_bytes']:,} B, baked "
                      f"{r['ours']['baked_bytes']:,} B; torch prune {r['peer']['state_dict_bytes']:,} B, "
                      f"after prune.remove {r['peer']['removed_state_dict_bytes']:,} B; dense "
                      f"{r['dense_state_dict_bytes']:,} B")
        report["nets"][net] = res
        write_json(out / "bench_prune.json", report)
    if all("sweep" in r for r in report["nets"].values()):
        plot_sweep(report["nets"], out / "no_retraining.png")
    write_json(out / "bench_prune.json", report)
    print(f"\n-> {out / 'bench_prune.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
