"""``sparsenet share``: k-means weight sharing, optional centroid fine-tuning, report."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..checkpoint import save_model
from ..data import load_dataset
from ..errors import SparsenetError
from ..fit_check import check_model_fits
from ..progress import log
from ..share import (
    INITS,
    finetune,
    format_report,
    parse_bits_spec,
    plot_histograms,
    quantization_report,
    share_weights,
    snapshot_codebooks,
)
from ..sources import load_model_source
from ..training import evaluate, seed_everything
from .common import (
    add_output_args,
    add_weights_arg,
    emit,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "share", help="k-means weight sharing per layer (codebook of 2**weight-bits centroids)"
    )
    p.add_argument("model_path", metavar="MODEL", help="checkpoint (.pt) to share")
    add_weights_arg(p)
    p.add_argument(
        "--weight-bits",
        default="conv=8,fc=5",
        help="shared-weight index width per layer by type (conv=8,fc=5) and/or name (fc3=6); "
        "default conv=8,fc=5",
    )
    p.add_argument("--bits", dest="weight_bits", default="conv=8,fc=5",
                   help=argparse.SUPPRESS)  # the old name
    p.add_argument("--init", choices=list(INITS), default="linear", help="centroid initialisation")
    p.add_argument("--max-iter", type=nonneg_int, default=300, help="most Lloyd iterations")
    p.add_argument(
        "--tol", type=nonneg_float, default=1e-4, help="Lloyd stops when shift² <= tol·var"
    )
    p.add_argument("--finetune-epochs", type=nonneg_int, default=0, help="centroid fine-tuning")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument(
        "--data", default=None, help="for accuracy and fine-tuning; default: the model's data set"
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--plots", metavar="DIR", help="write hist_<layer>.png for each shared layer")
    p.add_argument("--out", required=True, help="output checkpoint (.pt)")
    add_output_args(p)
    p.set_defaults(func=cmd_share)


def cmd_share(args: argparse.Namespace) -> int:
    parse_bits_spec(args.weight_bits)  # malformed specs fail before the model is read
    model, meta = load_model_source(args.model_path, args.weights)
    data_name = args.data or meta.get("dataset")
    if args.finetune_epochs and not data_name:
        raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data to fine-tune")
    data = load_dataset(data_name) if data_name else None
    if data is not None:
        check_model_fits(model, data, args.model_path)
    seed_everything(args.seed)

    acc: dict[str, float] = {}
    if data is not None:
        acc["unshared"] = evaluate(model, data.test)["accuracy"]
    share_weights(
        model, args.weight_bits, init=args.init, max_iter=args.max_iter, tol=args.tol, seed=args.seed
    )
    shared_report = quantization_report(model)
    before = snapshot_codebooks(model)
    if data is not None:
        acc["shared"] = evaluate(model, data.test)["accuracy"]
    history: list[dict[str, Any]] = []
    if args.finetune_epochs and data is not None:
        log(f"fine-tuning centroids for {args.finetune_epochs} epoch(s) on {data.name}", args.quiet)
        history = finetune(
            model,
            data.train,
            epochs=args.finetune_epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            quiet=args.quiet,
        )
        acc["finetuned"] = evaluate(model, data.test)["accuracy"]
    report = quantization_report(model)
    plots = [os.fspath(p) for p in plot_histograms(model, args.plots, before)] if args.plots else []

    share_meta = {
        "weight_bits": args.weight_bits,
        "init": args.init,
        "finetune_epochs": args.finetune_epochs,
        "accuracy": acc,
        "storage_bits_before": report["total"]["storage_bits_before"],
        "storage_bits_after": report["total"]["storage_bits_after"],
    }
    new_meta = {k: v for k, v in meta.items() if k not in ("history", "config")}
    new_meta.update(share=share_meta, source=os.fspath(args.model_path))
    if data is not None:
        new_meta["dataset"] = data.name
        new_meta["test_accuracy"] = acc.get("finetuned", acc["shared"])
    save_model(model, args.out, metadata=new_meta)

    result = {
        "model": os.fspath(args.model_path),
        "out": os.fspath(args.out),
        "weight_bits": args.weight_bits,
        "init": args.init,
        "accuracy": acc,
        "layers": report["layers"],
        "total": report["total"],
        "layers_before_finetune": shared_report["layers"] if history else None,
        "history": history,
        "plots": plots,
    }

    def text() -> str:
        lines = [format_report(report)]
        if acc:
            lines.append("test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
        if plots:
            lines.append(f"histograms: {len(plots)} PNG(s) in {args.plots}")
        lines.append(f"-> {args.out}")
        return "\n".join(lines)

    emit(args, result, text)
    return 0
