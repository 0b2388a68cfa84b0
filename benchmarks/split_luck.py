"""Is a search's validation-to-test gap a property of its validation split?

The budget search holds out ``holdout`` training images, chosen by a stratified split with a
fixed seed (0). Every Fashion-MNIST search reported in docs/pipeline.md ended with a test
drop 0.3 points above its validation drop. This script asks whether that gap comes from the
search (selection on the same images) or from the split: for each split seed it trains the
dense model on the training images minus that split (the registry recipe, as the search
does), prunes a copy by global magnitude to each sparsity in ``--rounds`` rounds of
``--epochs`` distilled retraining at lr/10 (no search, no choice made on any score), and
prints the drop against that dense model on the split and on the test set::

    python benchmarks/split_luck.py --model lenet300 --sparsity 0.8 --rounds 2
    python benchmarks/split_luck.py --model lenet300 --sparsity 0.95 --rounds 4

Results go to ``benchmarks/results/smallest/split-luck-<model>-s<sparsities>-r<rounds>.json``. The test set is read
here for this diagnosis only; the search never reads it before its last stage.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import git_commit, machine  # noqa: E402

from sparsenet.data import holdout, load_dataset  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.models import model_for_dataset  # noqa: E402
from sparsenet.prune import PruneSchedule, prune_iterative  # noqa: E402
from sparsenet.training import default_config, evaluate, fit  # noqa: E402
from sparsenet.training.distill import Distill  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "smallest"


def _points(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100 * float(evaluate(model, (x, y))["accuracy"])


def one_split(name: str, data_name: str, seed: int, held: int, sparsities: list[float],
              rounds: int, epochs: int) -> list[dict[str, Any]]:
    """Drops on the split and on the test set, at each sparsity, for split ``seed``."""
    data = load_dataset(data_name)
    part = holdout(data, held, seed=seed)
    cfg = default_config(name, data_name).replace(quiet=True, seed=0)
    dense = model_for_dataset(name, tuple(data.x_train.shape[1:]), data.num_classes, seed=0)
    fit(dense, part.train, cfg)
    dv = _points(dense, part.x_test, part.y_test)
    dt = _points(dense, data.x_test, data.y_test)
    rows = []
    for sp in sparsities:
        m = copy.deepcopy(dense)
        res = prune_iterative(m, part.train, "magnitude", sparsity=sp,
                              schedule=PruneSchedule(steps=rounds, retrain_epochs=epochs,
                                                     lr=cfg.lr * 0.1),
                              config=cfg.replace(seed=1), callbacks=[Distill(dense, 1.0, 4.0)],
                              seed=1)
        row = {"split_seed": seed, "sparsity": sp, "dense_validation": round(dv, 2),
               "dense_test": round(dt, 2),
               "validation_drop": round(dv - _points(res.model, part.x_test, part.y_test), 2),
               "test_drop": round(dt - _points(res.model, data.x_test, data.y_test), 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet300")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.8, 0.95])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    commit = git_commit()
    rows = [r for s in args.seeds for r in one_split(args.model, args.data, s, args.holdout,
                                                     args.sparsity, args.rounds, args.epochs)]
    sp = "-".join(f"{v:g}" for v in args.sparsity)
    write_json(OUT / f"split-luck-{args.model}-s{sp}-r{args.rounds}.json",
               {"rows": rows, "args": vars(args), "commit": commit, "machine": machine()})


if __name__ == "__main__":
    main()
