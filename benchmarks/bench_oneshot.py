"""One-shot pruning without retraining: OBD, magnitude, Wanda, SparseGPT on LeNet-300 and LeNet-5.

1. Accuracy on the full Fashion-MNIST test set at 50/70/80/90/95 % global sparsity and at
   2:4, no retraining at all; every calibrated method (and OBD's Hessian) sees the same
   first ``--calibration`` training samples.
2. Cost: SparseGPT on LeNet-300 (wall time of the prune call) against one training
   epoch of the model's default recipe.
3. Peer: torchao's ``WandaSparsifier`` (if importable) on the Linear layers at the same
   per-layer sparsity and calibration; compared with our ``wanda`` on the same definition
   (one ranking per layer, dense-model statistics) and as shipped (rows, sequential).
4. Deep-compression use (LeNet-300): prune once to Han's 92 % with magnitude or SparseGPT,
   then retrain at the training lr / 10: accuracy after 0, 1, 2, 3 epochs, i.e. the
   retraining epochs SparseGPT saves.

Timings are single runs on whatever machine this runs on (noted in the JSON). Run::

    SPARSENET_ARTIFACTS=/work/artifacts python benchmarks/bench_oneshot.py --out benchmarks/results/oneshot
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import git_commit, load_baseline, machine  # noqa: E402

from sparsenet.data import fashion_mnist  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.prune import (  # noqa: E402
    OBD,
    PruneSpec,
    SparseGPT,
    Wanda,
    apply_mask,
    get_mask,
    parse_pattern,
    prunable_targets,
    prune,
    satisfies,
    select_masks,
    sparsity_report,
)
from sparsenet.training import default_config, evaluate, fit  # noqa: E402

SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95]
METHODS = ["obd", "magnitude", "wanda", "sparsegpt"]


def criterion(method: str, cal: tuple[torch.Tensor, torch.Tensor]) -> Any:
    n = len(cal[0])
    return {
        "obd": lambda: OBD(cal, form="lm"),
        "magnitude": lambda: "magnitude",
        "wanda": lambda: Wanda(cal, calibration=n),
        "sparsegpt": lambda: SparseGPT(cal, calibration=n),
    }[method]()


def acc(model: nn.Module, data: Any) -> float:
    return float(evaluate(model, data.test)["accuracy"])


def sweep(base: nn.Module, data: Any, cal: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """Part 1: accuracy against sparsity and at 2:4, no retraining."""
    out: dict[str, Any] = {"dense": acc(base, data), "sparsity": {}, "2:4": {}}
    for s in SPARSITIES:
        row = {}
        for m in METHODS:
            net = copy.deepcopy(base)
            t0 = time.perf_counter()
            prune(net, criterion(m, cal), sparsity=s)
            row[m] = {"accuracy": acc(net, data), "seconds": time.perf_counter() - t0,
                      "sparsity": sparsity_report(net)["sparsity"]}
        out["sparsity"][f"{s:g}"] = row
        print(f"  {s:.0%}: " + "  ".join(f"{m} {r['accuracy']:.4f}" for m, r in row.items()), flush=True)
    pat = parse_pattern("2:4")
    for m in METHODS:
        net = copy.deepcopy(base)
        prune(net, criterion(m, cal), pattern="2:4", scope="layer")
        ok = all(satisfies(get_mask(t.module), pat) for t in prunable_targets(net))
        out["2:4"][m] = {"accuracy": acc(net, data), "sparsity": sparsity_report(net)["sparsity"],
                         "pattern_holds": ok}
    print("  2:4: " + "  ".join(f"{m} {r['accuracy']:.4f}" for m, r in out["2:4"].items()), flush=True)
    return out


def cost(base: nn.Module, data: Any, cal: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """Part 2: SparseGPT's wall time against one training epoch."""
    times = []
    for _ in range(3):
        net = copy.deepcopy(base)
        t0 = time.perf_counter()
        prune(net, SparseGPT(cal, calibration=len(cal[0])), sparsity=0.9)
        times.append(time.perf_counter() - t0)
    net = copy.deepcopy(base)
    cfg = default_config("lenet300", data.name).replace(epochs=1, quiet=True)
    t0 = time.perf_counter()
    fit(net, data.train, cfg)
    epoch = time.perf_counter() - t0
    return {"sparsegpt_seconds": min(times), "sparsegpt_runs": times, "epoch_seconds": epoch,
            "ratio": min(times) / epoch, "calibration": len(cal[0])}


def peer(base: nn.Module, data: Any, cal: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """Part 3: torchao's WandaSparsifier on the Linear layers, per-layer sparsity."""
    try:
        from torchao.sparsity import WandaSparsifier
    except Exception as exc:  # noqa: BLE001 - any import failure means no peer
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"available": True, "rows": {}}
    linear = [t for t in prunable_targets(base) if isinstance(t.module, nn.Linear)]
    names = [t.name for t in linear]
    for s in SPARSITIES:
        net = copy.deepcopy(base)
        sp = WandaSparsifier(sparsity_level=s)
        t0 = time.perf_counter()
        sp.prepare(net, config=[{"tensor_fqn": f"{n}.weight"} for n in names])
        with torch.no_grad():
            for i in range(0, len(cal[0]), 256):
                net(cal[0][i:i + 256])
        sp.step()
        sp.squash_mask()
        peer_s = time.perf_counter() - t0
        peer_acc = acc(net, data)
        peer_keep = {n: dict(net.named_modules())[n].weight.detach() != 0 for n in names}
        # ours, same definition: dense-model scores, one ranking per layer, Linear layers only
        same = copy.deepcopy(base)
        targets = [t for t in prunable_targets(same) if t.name in names]
        scores = Wanda(cal, calibration=len(cal[0]), group="layer").scores(same, targets)
        agree = []
        for t, keep in zip(targets, select_masks(targets, scores, PruneSpec(sparsity=s, scope="layer")),
                           strict=True):
            apply_mask(t.module, keep, t.tensor)
            agree.append(float((keep == peer_keep[t.name]).float().mean()))
        shipped = copy.deepcopy(base)
        prune(shipped, Wanda(cal, calibration=len(cal[0])), per_layer=dict.fromkeys(names, s))
        out["rows"][f"{s:g}"] = {
            "torchao": {"accuracy": peer_acc, "seconds": peer_s},
            "ours_same_definition": {"accuracy": acc(same, data), "mask_agreement": min(agree)},
            "ours_rows_sequential": {"accuracy": acc(shipped, data)},
        }
    return out


def retrain(base: nn.Module, data: Any, cal: tuple[torch.Tensor, torch.Tensor],
            epochs: int = 3, sparsity: float = 0.92) -> dict[str, Any]:
    """Part 4: one-shot to 92 % then retraining; accuracy after each epoch."""
    cfg = default_config("lenet300", data.name).replace(quiet=True)
    cfg = cfg.replace(epochs=1, lr=cfg.lr / 10)
    out: dict[str, Any] = {"sparsity": sparsity, "lr": cfg.lr}
    for m in ("magnitude", "sparsegpt"):
        net = copy.deepcopy(base)
        prune(net, criterion(m, cal), sparsity=sparsity)
        accs = [acc(net, data)]
        for e in range(epochs):
            fit(net, data.train, cfg.replace(seed=e))
            accs.append(acc(net, data))
        out[m] = accs
        print(f"  retrain {m}: " + " ".join(f"{a:.4f}" for a in accs), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/oneshot")
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--calibration", type=int, default=1024)
    ap.add_argument("--retrain-epochs", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: cost,peer,retrain")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    data = fashion_mnist()
    cal = (data.x_train[: args.calibration], data.y_train[: args.calibration])
    result: dict[str, Any] = {"commit": git_commit(), "machine": machine(),
                              "note": "accuracies on the full test set; timings single runs on a "
                                      "loaded machine", "calibration": args.calibration,
                              "models": {}}
    for name in args.models.split(","):
        base, _ = load_baseline(name)
        base.eval()
        print(f"{name}: dense {acc(base, data):.4f}", flush=True)
        rec: dict[str, Any] = {"sweep": sweep(base, data, cal)}
        if "peer" not in skip:
            rec["peer"] = peer(base, data, cal)
        if name == "lenet300" and "cost" not in skip:
            rec["cost"] = cost(base, data, cal)
            print(f"  cost: sparsegpt {rec['cost']['sparsegpt_seconds']:.2f} s, epoch "
                  f"{rec['cost']['epoch_seconds']:.2f} s", flush=True)
        if name == "lenet300" and "retrain" not in skip:
            rec["retrain"] = retrain(base, data, cal, args.retrain_epochs)
        result["models"][name] = rec
    path = write_json(Path(args.out) / "oneshot.json", result)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
