"""sparsenet's Deep Compression against the tools a ResNet user would reach for instead.

Three ways to make the same trained dense model small, measured in one run on the same data:

* **sparsenet**: the built-in ``deep-compression`` recipe for the model (``sparsenet.compress``)
  → one self-describing ``.snn``. With ``--run-dir`` an existing run directory of that recipe
  is resumed (every stage whose inputs are unchanged is reused, so the figures are those of
  that run, recomputed from its checkpoints).
* **Torch-Pruning** (the ``torch-pruning`` package): structured channel pruning by L2 group
  magnitude, in steps of ``--step`` of the channels, each step followed by the same retraining
  as sparsenet's prune stage (epochs, lr factor), until the test accuracy falls more than
  ``--max-drop`` points below dense; the last model within the budget is saved with
  ``torch.save(state_dict)`` (the smallest honest file of a pruned torch model).
* **unstructured peer** (``bench_pipeline.peer_pipeline``): ``torch.nn.utils.prune`` + scikit-learn
  KMeans + dahuffman over CSR, following the same recipe.

Usage::

    python benchmarks/bench_structured.py --model resnet --threads 2 [--run-dir DIR]

Writes ``benchmarks/results/structured/<model>.json`` (sizes, accuracies, wall times, commit,
machine) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import git_commit, load_baseline, machine  # noqa: E402
from bench_pipeline import peer_pipeline  # noqa: E402

from sparsenet.data import Dataset, load_dataset  # noqa: E402
from sparsenet.pipeline import compress, load_recipe  # noqa: E402
from sparsenet.training import default_config, evaluate, fit, seed_everything  # noqa: E402


def dense_bytes(model: nn.Module) -> int:
    """float32 bytes of every parameter and buffer a deployment needs (``state_dict``)."""
    return sum(4 * t.numel() for t in model.state_dict().values() if t.is_floating_point())


def state_dict_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def torch_pruning_peer(
    model: nn.Module, data: Dataset, recipe: Any, *, step: float, max_drop: float, dense_acc: float
) -> dict[str, Any]:
    """Channel pruning with Torch-Pruning, ``step`` more of the channels per round, retrained."""
    import torch_pruning as tp

    pr = next(s.settings for s in recipe.stages if s.kind == "prune")
    base = default_config(model.arch["name"], data.name).replace(quiet=True)  # type: ignore[union-attr]
    cfg = base.replace(epochs=pr["retrain_epochs"], lr=base.lr * pr["lr_factor"], seed=1)
    example = data.train[0][:1]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]  # the classifier
    rounds = max(1, int(round(0.95 / step)))
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=step * rounds, iterative_steps=rounds, ignored_layers=[last],
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    t0 = time.perf_counter()
    for k in range(1, rounds + 1):
        pruner.step()
        if cfg.epochs:
            fit(model, data.train, cfg)
        acc = evaluate(model, data.test)["accuracy"]
        row = {"round": k, "channel_ratio": step * k, "accuracy": acc,
               "params": sum(p.numel() for p in model.parameters()),
               "bytes": state_dict_bytes(model), "seconds": time.perf_counter() - t0}
        history.append(row)
        print(f"[torch-pruning] round {k}: {step * k:.0%} of channels, acc {acc:.4f}, "
              f"{row['bytes']:,} B", flush=True)
        if dense_acc - acc > max_drop / 100:
            break
        best = row
    return {"best": best, "history": history, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--run-dir", help="resume this run directory of the built-in recipe")
    ap.add_argument("--report", help="take sparsenet's row from this finished run's report.json "
                    "(run with the built-in recipe) instead of running or resuming it")
    ap.add_argument("--step", type=float, default=0.1, help="channel fraction pruned per round")
    ap.add_argument("--max-drop", type=float, default=0.5, help="accuracy budget, points")
    ap.add_argument("--skip-unstructured", action="store_true")
    ap.add_argument("--skip-structured", action="store_true", help="no Torch-Pruning run")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "structured"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    recipe = load_recipe("deep-compression", model=args.model)
    dense, _ = load_baseline(args.model, args.data)
    dense_acc = evaluate(dense, data.test)["accuracy"]
    size0 = dense_bytes(dense)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    seed_everything(0)
    t0 = time.perf_counter()
    if args.report:
        rep = json.loads(Path(args.report).read_text())
        ours = {"accuracy": rep["final"]["accuracy"], "bytes": rep["final"]["file_bytes"],
                "seconds": rep.get("seconds"), "report": args.report}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = args.run_dir or tmp
            _, rep = compress(copy.deepcopy(dense), data, recipe, run_dir=run_dir,
                              out=os.path.join(run_dir, "model.snn"), quiet=True, report=False,
                              resume=bool(args.run_dir))
        ours = {"accuracy": rep["final"]["accuracy"], "bytes": rep["final"]["file_bytes"],
                "seconds": time.perf_counter() - t0, "reused_run_dir": bool(args.run_dir)}
    seed_everything(0)
    tpr: dict[str, Any] = {"best": None, "history": [], "seconds": 0.0}
    if not args.skip_structured:
        tpr = torch_pruning_peer(copy.deepcopy(dense), data, recipe, step=args.step,
                                 max_drop=args.max_drop, dense_acc=dense_acc)
    unstructured = None
    if not args.skip_unstructured:
        seed_everything(0)
        unstructured = peer_pipeline(copy.deepcopy(dense), data, recipe)

    rows = [("sparsenet deep-compression (.snn)", ours["accuracy"], ours["bytes"], ours["seconds"])]
    if tpr["best"] is not None:
        rows.append(("Torch-Pruning channels + torch.save", tpr["best"]["accuracy"],
                     tpr["best"]["bytes"], tpr["seconds"]))
    if unstructured is not None:
        rows.append(("torch prune + KMeans + dahuffman", unstructured["accuracy"],
                     unstructured["bytes"], unstructured["seconds"]))
    result = {
        "benchmark": "structured", "model": args.model, "data": data.name,
        "dense_accuracy": dense_acc, "dense_float32_bytes": size0,
        "sparsenet": ours, "torch_pruning": tpr, "unstructured_peer": unstructured,
        "table": [{"method": r[0], "accuracy": r[1], "bytes": r[2], "ratio": size0 / r[2],
                   "seconds": r[3]} for r in rows],
        "commit": git_commit(), "machine": machine(), "torch_threads": torch.get_num_threads(),
    }
    (out / f"{args.model}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"{args.model} on {data.name}: dense {dense_acc:.4f}, {size0:,} B float32")
    print(f"{'method':<38}{'accuracy':>9}{'drop':>7}{'bytes':>11}{'ratio':>8}{'seconds':>9}")
    for name, acc, nbytes, secs in rows:
        print(f"{name:<38}{acc:>9.4f}{100 * (dense_acc - acc):>7.2f}{nbytes:>11,}"
              f"{size0 / nbytes:>7.1f}x{secs:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
