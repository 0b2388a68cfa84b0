"""Distillation against plain retraining, scored on validation images only.

Starts from the dense model of a search's run directory (``stages/00-train.pt``: trained
on the training images minus the validation split), prunes it by global magnitude in two
rounds with retraining (``epochs`` per round at ``lr × lr_factor``), with or without
distillation from the dense model (``weight``, ``temperature``), and prints the
validation drop against the dense model and the share of validation images on which their
labels disagree. The test set is not read. Each row is one run::

    python benchmarks/distill_sweep.py RUN_DIR --sparsity 0.95 --weight 3 --temperature 4 \\
        --epochs 8 --lr-factor 0.1

Rows of ``docs/pipeline.md`` ("Distillation, measured on validation images only") came from
this script with ``RUN_DIR`` = the LeNet-300 / Fashion-MNIST search's run directory.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsenet.checkpoint import load_model  # noqa: E402
from sparsenet.data import holdout, load_dataset, validation_size  # noqa: E402
from sparsenet.models import arch_of  # noqa: E402
from sparsenet.prune import PruneSchedule, prune_iterative  # noqa: E402
from sparsenet.training import default_config, evaluate, predict  # noqa: E402
from sparsenet.training.distill import Distill  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--weight", type=float, default=0.0, help="0: no distillation")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=4, help="retraining epochs per round")
    ap.add_argument("--lr-factor", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    split = holdout(data, validation_size(len(data.y_train), data.num_classes))
    dense, _ = load_model(args.run_dir / "stages" / "00-train.pt")
    arch = arch_of(dense)
    cfg = default_config(arch["name"] if arch else "custom", data.name)
    student = copy.deepcopy(dense)
    callbacks = [Distill(dense, args.weight, args.temperature)] if args.weight > 0 else []
    schedule = PruneSchedule(steps=2, retrain_epochs=args.epochs, lr=cfg.lr * args.lr_factor)
    pruned = prune_iterative(student, split.train, "magnitude", sparsity=args.sparsity,
                             schedule=schedule, config=cfg.replace(quiet=True, seed=1),
                             callbacks=callbacks, seed=1).model
    dense_acc = float(evaluate(dense, split.test)["accuracy"])
    acc = float(evaluate(pruned, split.test)["accuracy"])
    differ = float((predict(pruned, split.x_test) != predict(dense, split.x_test)).float().mean())
    print(json.dumps({"sparsity": args.sparsity, "weight": args.weight,
                      "temperature": args.temperature, "epochs": args.epochs,
                      "lr_factor": args.lr_factor,
                      "validation_drop_points": round(100 * (dense_acc - acc), 2),
                      "disagreement_percent": round(100 * differ, 2)}))


if __name__ == "__main__":
    main()
