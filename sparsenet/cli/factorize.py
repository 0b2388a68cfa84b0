"""``sparsenet factorize``: truncated-SVD low-rank factorisation, optional fine-tuning."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..checkpoint import save_model
from ..data import load_dataset
from ..errors import SparsenetError, SpecError
from ..fit_check import check_model_fits
from ..lowrank import factorize, finetune, format_plan, plan_ranks, plan_table, plot_spectra
from ..progress import log
from ..sources import load_model_source
from ..training import default_config, evaluate, seed_everything
from .common import (
    add_output_args,
    add_weights_arg,
    emit,
    nonneg_int,
    parse_assignments,
    positive_float,
    positive_int,
    seed_int,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "factorize",
        help="replace Linear/Conv2d layers by truncated-SVD low-rank factors, then fine-tune",
    )
    p.add_argument("model_path", metavar="MODEL", help="checkpoint (.pt) to factorise")
    add_weights_arg(p)
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--rank", help="one rank for every layer (32) or per layer (fc1=32,fc2=16)")
    rule.add_argument(
        "--energy", type=positive_float, help="keep this fraction of Σσ² per layer, in (0, 1]"
    )
    rule.add_argument(
        "--budget",
        type=positive_float,
        help="keep at most this fraction of the considered layers' parameters, in (0, 1]",
    )
    p.add_argument(
        "--layers", help="comma-separated layers to consider (default: all Linear/Conv2d)"
    )
    p.add_argument(
        "--force", action="store_true", help="factorise even when it does not save weights"
    )
    p.add_argument(
        "--budget-error",
        choices=["absolute", "relative"],
        default="absolute",
        help="error a rank step removes under --budget: σ² or σ²/‖W‖² (default absolute)",
    )
    p.add_argument("--finetune-epochs", type=nonneg_int, default=0)
    p.add_argument("--data", default=None, help="default: the data set the model was trained on")
    p.add_argument(
        "--lr", type=positive_float, default=None, help="fine-tuning lr (default: recipe lr / 2)"
    )
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument(
        "--plots", metavar="DIR", help="write a singular-value spectrum PNG per layer here"
    )
    p.add_argument("--out", required=True, help="output checkpoint (.pt)")
    add_output_args(p)
    p.set_defaults(func=cmd_factorize)


def parse_rank(text: str) -> int | dict[str, int]:
    """``"32"`` → 32; ``"fc1=32,fc2=16"`` → ``{"fc1": 32, "fc2": 16}``; SpecError otherwise."""

    def positive(v: str) -> int:
        r = int(v)
        if r < 1:
            raise ValueError(v)
        return r

    if "=" not in text:
        try:
            return positive(text.strip())
        except ValueError:
            raise SpecError(
                f"bad rank {text!r}; expected an integer >= 1 or NAME=RANK[,NAME=RANK...]"
            ) from None
    return parse_assignments(text, positive, what="NAME=RANK (RANK an integer >= 1)")


def cmd_factorize(args: argparse.Namespace) -> int:
    for name in ("energy", "budget"):
        v = getattr(args, name)
        if v is not None and not 0 < v <= 1:
            raise SpecError(f"bad --{name} {v!r}; expected a number in (0, 1]")
    rank = parse_rank(args.rank) if args.rank is not None else None
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    model, meta = load_model_source(args.model_path, args.weights)
    data_name = args.data or meta.get("dataset")
    if args.finetune_epochs and not data_name:
        raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data to fine-tune")
    plan = plan_ranks(
        model,
        rank=rank,
        energy=args.energy,
        budget=args.budget,
        layers=layers,
        force=args.force,
        budget_error=args.budget_error,
    )
    data = load_dataset(data_name) if data_name else None
    if data is not None:
        check_model_fits(model, data, args.model_path)
    acc_dense = evaluate(model, data.test)["accuracy"] if data else None
    factorize(model, plan=plan)
    acc_svd = evaluate(model, data.test)["accuracy"] if data else None
    history: list[dict[str, Any]] = []
    if data is not None and args.finetune_epochs:
        arch = getattr(model, "arch", None) or {}
        base = default_config(arch.get("name", ""), data.name)
        cfg = base.replace(
            epochs=args.finetune_epochs,
            lr=args.lr if args.lr is not None else base.lr / 2,
            seed=args.seed,
            quiet=args.quiet,
            **({"batch_size": args.batch_size} if args.batch_size else {}),
        )
        seed_everything(args.seed)
        log(f"fine-tuning {args.finetune_epochs} epochs, lr={cfg.lr}", args.quiet)
        history = finetune(model, data.train, cfg, val=data.test)
    acc_final = evaluate(model, data.test)["accuracy"] if data else None
    table = plan_table(plan)
    plots = [os.fspath(p) for p in plot_spectra(plan, args.plots)] if args.plots else []
    rule = (
        {"rank": rank}
        if rank is not None
        else {"energy": args.energy}
        if args.energy is not None
        else {"budget": args.budget}
    )
    new_meta = {k: v for k, v in meta.items() if k not in ("history", "config")}
    new_meta.update(
        dataset=data.name if data else meta.get("dataset"),
        lowrank={
            **rule,
            **table,
            "finetune_epochs": args.finetune_epochs,
            "source": args.model_path,
        },
        test_accuracy=acc_final,
        test_accuracy_dense=acc_dense,
        test_accuracy_before_finetune=acc_svd,
        history=history,
    )
    save_model(model, args.out, metadata=new_meta)
    result = {
        "model": args.model_path,
        "out": os.fspath(args.out),
        **rule,
        **table,
        "test_accuracy_dense": acc_dense,
        "test_accuracy_factorized": acc_svd,
        "test_accuracy": acc_final,
        "finetune_epochs": args.finetune_epochs,
        "plots": plots,
    }

    def text() -> str:
        lines = [format_plan(plan)]
        if data is not None:
            lines.append(
                f"test accuracy: dense {acc_dense:.4f}, factorised {acc_svd:.4f}, "
                f"after {args.finetune_epochs} fine-tuning epochs {acc_final:.4f} ({data.name})"
            )
        lines.append(f"-> {args.out}")
        return "\n".join(lines)

    emit(args, result, text)
    return 0
