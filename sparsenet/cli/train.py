"""``sparsenet train``, ``sparsenet eval`` and ``sparsenet info``."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from typing import Any

from ..checkpoint import load_checkpoint, save_model
from ..data import load_dataset
from ..distributed import barrier, is_main, world_size
from ..errors import SparsenetError
from ..models import MODELS, model_for_dataset
from ..progress import log
from ..summary import format_summary, model_summary
from ..training import TrainConfig, default_config, evaluate, fit, seed_everything
from .common import (
    add_output_args,
    emit,
    load_any_model,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a registered model on a data set")
    p.add_argument("--model", required=True, help=f"one of {sorted(MODELS)}")
    p.add_argument(
        "--data", default="fashion-mnist", help="fashion-mnist, mnist, digits or an IDX directory"
    )
    p.add_argument("--epochs", type=nonneg_int, help="default: the model's recipe")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--momentum", type=nonneg_float)
    p.add_argument("--weight-decay", type=nonneg_float)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint path (.pt), written after every epoch")
    p.add_argument(
        "--resume", action="store_true", help="continue from --out if it holds an unfinished run"
    )
    add_output_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="test accuracy of a checkpoint (.pt) or compressed model (.snn)"
    )
    p.add_argument("model_path", metavar="MODEL")
    p.add_argument("--data", default=None, help="default: the data set the model was trained on")
    add_output_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="layers, parameters, non-zeros and bytes of a model file")
    p.add_argument("model_path", metavar="MODEL")
    add_output_args(p)
    p.set_defaults(func=cmd_info)


def train_config_from_args(
    args: argparse.Namespace, model_name: str, data_name: str
) -> TrainConfig:
    """The model's default recipe with any CLI overrides applied."""
    overrides = {
        k: getattr(args, k)
        for k in ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule")
        if getattr(args, k, None) is not None
    }
    return default_config(model_name, data_name).replace(
        seed=args.seed, quiet=args.quiet, **overrides
    )


def cmd_train(
    args: argparse.Namespace,
    callbacks: list[Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> int:
    data = load_dataset(args.data)
    seed_everything(args.seed)
    model = model_for_dataset(args.model, data.input_shape, data.num_classes, seed=args.seed)
    cfg = train_config_from_args(args, args.model, data.name)
    log(
        f"training {args.model} on {data!r}: {cfg.epochs} epochs, {cfg.optimizer} lr={cfg.lr}"
        + (f", {world_size()} processes" if world_size() > 1 else ""),
        args.quiet or not is_main(),
    )
    meta = {"dataset": data.name, "complete": False, **(extra_meta or {})}
    history = fit(
        model,
        data.train,
        cfg,
        callbacks=callbacks or [],
        val=data.test,
        checkpoint=args.out,
        resume=args.resume,
        metadata=meta,
    )
    ev = evaluate(model, *data.test)
    meta.update(
        complete=True,
        test_accuracy=ev["accuracy"],
        test_loss=ev["loss"],
        history=history,
        config=asdict(cfg),
    )
    if is_main():
        # Keep the training state so a later --resume with more epochs continues from here.
        prior = load_checkpoint(args.out).get("train_state") if os.path.exists(args.out) else None
        save_model(model, args.out, metadata=meta, train_state=prior)
    barrier()
    result = {
        "model": args.model,
        "dataset": data.name,
        "epochs": cfg.epochs,
        "test_accuracy": ev["accuracy"],
        "test_loss": ev["loss"],
        "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history))
        if history
        else None,
        "out": os.fspath(args.out),
    }
    emit(
        args,
        result,
        f"test accuracy {ev['accuracy']:.4f} ({data.name}, {cfg.epochs} epochs) -> {args.out}",
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    model, meta = load_any_model(args.model_path)
    data_name = args.data or meta.get("dataset")
    if not data_name:
        raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data")
    data = load_dataset(data_name)
    ev = evaluate(model, *data.test)
    result = {
        "model": args.model_path,
        "dataset": data.name,
        "test_accuracy": ev["accuracy"],
        "test_loss": ev["loss"],
        "n": ev["n"],
    }
    emit(
        args,
        result,
        f"test accuracy {ev['accuracy']:.4f}  loss {ev['loss']:.4f}  ({data.name}, n={ev['n']})",
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model, meta = load_any_model(args.model_path)
    summary = model_summary(model)
    summary["file"] = os.fspath(args.model_path)
    summary["file_bytes"] = os.path.getsize(args.model_path)
    summary["arch"] = getattr(model, "arch", None)
    summary["metadata"] = {k: v for k, v in meta.items() if k not in ("history", "config")}
    text = lambda: (  # noqa: E731
        f"{args.model_path}: {summary['arch']['name'] if summary['arch'] else type(model).__name__}, "
        f"file {summary['file_bytes']:,} bytes\n" + format_summary(summary)
    )
    emit(args, summary, text)
    return 0
