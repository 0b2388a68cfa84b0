"""``sparsenet train``, ``sparsenet eval`` and ``sparsenet info``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint, save_model
from ..data import load_dataset
from ..distributed import barrier, is_main, world_size
from ..errors import SparsenetError, SpecError
from ..fit_check import check_model_fits
from ..models import MODELS, model_for_dataset
from ..progress import log
from ..sources import load_model_source
from ..summary import format_summary, model_summary
from ..training import TrainConfig, default_config, evaluate, fit, seed_everything
from .common import (
    add_output_args,
    add_weights_arg,
    emit,
    input_shape,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
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
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--momentum", type=nonneg_float)
    p.add_argument("--weight-decay", type=nonneg_float)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"])
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True, help="checkpoint path (.pt), written after every epoch")
    p.add_argument(
        "--resume", action="store_true", help="continue from --out if it holds an unfinished run"
    )
    add_regularize_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="test accuracy of a checkpoint (.pt) or compressed model (.snn)"
    )
    p.add_argument("model_path", metavar="MODEL")
    add_weights_arg(p)
    p.add_argument("--data", default=None, help="default: the data set the model was trained on")
    add_output_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="layers, parameters, non-zeros and bytes of a model file")
    p.add_argument("model_path", metavar="MODEL")
    add_weights_arg(p)
    p.add_argument(
        "--data",
        default=None,
        help="also measure activation sparsity on this data set's test split",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="with --data: use the first N test samples",
    )
    p.add_argument(
        "--eps",
        type=nonneg_float,
        default=None,
        help="also count weights with |w| < EPS (and Hoyer)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="a .snn: load it on the sparse runtime and say what its compiled plan covers "
        "and what falls back to per-module execution",
    )
    p.add_argument("--input-shape", type=input_shape, default=None,
                   help="with --plan: per-sample input shape C,H,W when the file does not record it")
    add_output_args(p)
    p.set_defaults(func=cmd_info)


def _spec_type(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse type that checks a spec string now (one-line error, exit 2) and keeps it."""

    def conv(text: str) -> str:
        try:
            parse(text)
        except SpecError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return conv


def add_regularize_args(p: argparse.ArgumentParser) -> None:
    """The penalty and sparse-activation flags of ``train`` (see :mod:`sparsenet.regularize`)."""
    from ..regularize import spec

    g = p.add_argument_group("sparse regularisation (J~ = J + lambda R)")
    weight = _spec_type(spec.parse_weight_penalty)
    g.add_argument("--l1", type=weight, metavar="LAMBDA[@LAYER,...]", help="L1 on weights")
    g.add_argument(
        "--l2", type=weight, metavar="LAMBDA[@LAYER,...]", help="L2 (lambda/2 |w|^2) on weights"
    )
    g.add_argument(
        "--group-lasso",
        type=weight,
        metavar="LAMBDA[@LAYER,...]",
        help="group lasso over output rows / conv filters",
    )
    g.add_argument(
        "--penalize-bias", action="store_true", help="weight penalties also cover biases"
    )
    g.add_argument(
        "--act-penalty",
        type=_spec_type(spec.parse_act_penalty),
        action="append",
        default=[],
        metavar="KIND:LAMBDA[:RHO][@LAYER,...]",
        help="activation penalty, KIND log1p|l1|kl, e.g. log1p:1e-4@fc1,fc2 (repeatable)",
    )
    g.add_argument(
        "--activation",
        type=_spec_type(spec.parse_activation),
        metavar="KIND:TAU[:ste][@LAYER,...]",
        help="swap activations: truncated-sigmoid|thresholded-relu|shifted-relu; ':ste' gives "
        "truncated-sigmoid a straight-through gradient; e.g. truncated-sigmoid:0.1",
    )


def regularize_from_args(
    args: argparse.Namespace, model: nn.Module
) -> tuple[list[Any], dict[str, Any]]:
    """Apply ``--activation`` to ``model`` and build the penalty callbacks; names checked now."""
    from ..regularize import callbacks_from_specs, replace_activations

    record: dict[str, Any] = {}
    if getattr(args, "activation", None):
        replace_activations(model, args.activation)
        record["activation"] = args.activation
    _check_resumed_activations(args, model)
    callbacks, pen = callbacks_from_specs(
        model,
        l1=getattr(args, "l1", None),
        l2=getattr(args, "l2", None),
        group_lasso=getattr(args, "group_lasso", None),
        act_penalties=getattr(args, "act_penalty", None) or (),
        include_bias=getattr(args, "penalize_bias", False),
    )
    record.update(pen)
    return callbacks, record


def _check_resumed_activations(args: argparse.Namespace, model: nn.Module) -> None:
    """``--resume`` must rebuild the same activations the checkpoint was trained with."""
    from ..checkpoint import describe_transforms

    path = getattr(args, "out", None)
    if not getattr(args, "resume", False) or not path or not os.path.exists(path):
        return
    ckpt = load_checkpoint(path)

    def kinds(entries: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        return [(e["module"], e["args"]) for e in entries if e.get("kind") == "activation"]

    if kinds(ckpt.get("transforms", [])) != kinds(describe_transforms(model)):
        was = ckpt.get("metadata", {}).get("regularize", {}).get("activation")
        raise SpecError(
            f"{path}: cannot resume, the run was trained with --activation {was!r} but this "
            f"command has --activation {getattr(args, 'activation', None)!r}; pass the same"
        )


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
    reg_callbacks, reg_record = regularize_from_args(args, model)
    if reg_record:
        extra_meta = {**(extra_meta or {}), "regularize": reg_record}
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
        callbacks=[*(callbacks or []), *reg_callbacks],
        val=data.test,
        checkpoint=args.out,
        resume=args.resume,
        metadata=meta,
    )
    ev = evaluate(model, data.test)
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


def _eval_estimator(args: argparse.Namespace) -> int:
    """``eval DIR/deepsc-model.npz``: a DeepSC saved by ``sparsenet deepsc`` (no pickle)."""
    from ..sparse_coding import DeepSC

    model = DeepSC.load(args.model_path)
    data_name = args.data or getattr(model, "dataset_", None)
    if not data_name:
        raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data")
    data = load_dataset(data_name)
    # a data set of other image sizes: DeepSC.transform raises InvalidInputError naming both
    ev_acc = float(model.score(data.x_test, data.y_test.numpy()))
    result = {"model": args.model_path, "dataset": data.name, "test_accuracy": ev_acc,
              "test_loss": None, "n": len(data.x_test)}
    emit(args, result, f"test accuracy {ev_acc:.4f}  ({data.name}, n={len(data.x_test)})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if _is_npz(args.model_path):
        return _eval_estimator(args)
    model, meta = load_model_source(args.model_path, args.weights)
    data_name = args.data or meta.get("dataset")
    if not data_name:
        raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data")
    data = load_dataset(data_name)
    check_model_fits(model, data, args.model_path)
    ev = evaluate(model, data.test)

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


def _is_npz(path: str) -> bool:
    """An .npz archive (a zip file) rather than a checkpoint: what ``deepsc`` writes."""
    if not str(path).endswith(".npz"):
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def cmd_info(args: argparse.Namespace) -> int:
    """Layers and non-zeros of a model. A .snn file is described from its header
    (:func:`sparsenet.inference.describe_snn`: nothing decoded) unless --eps or --data need
    its weights, which then load under the decode limit."""
    if _header_only(args):
        from ..inference import describe_snn

        described = describe_snn(args.model_path)
        model, meta, summary = described.model, described.header.metadata, described.summary
    else:
        model, meta = load_model_source(args.model_path, args.weights)
        summary = model_summary(model)
    summary["file"] = os.fspath(args.model_path)
    is_file = os.path.isfile(args.model_path)  # or a registry name / module:factory
    summary["file_bytes"] = os.path.getsize(args.model_path) if is_file else None
    summary["arch"] = getattr(model, "arch", None)
    summary["metadata"] = {k: v for k, v in meta.items() if k not in ("history", "config")}
    extra = _sparsity_info(args, model, summary) + _plan_info(args, summary)
    text = lambda: (  # noqa: E731
        f"{args.model_path}: {summary['arch']['name'] if summary['arch'] else type(model).__name__}, "
        + (f"file {summary['file_bytes']:,} bytes\n" if is_file else "not a file\n")
        + format_summary(summary) + extra
    )
    emit(args, summary, text)
    return 0


def _plan_info(args: argparse.Namespace, summary: dict[str, Any]) -> str:
    """With ``--plan``: the sparse runtime's plan description (``summary["plan"]``). Returns text."""
    if not getattr(args, "plan", False):
        return ""
    from ..loading import load
    from ..runtime.plan import guess_input_shape, plan_of
    from ..sources import source_kind

    if source_kind(args.model_path) != "snn":
        raise SparsenetError(f"--plan needs a .snn file, got {args.model_path}")
    model, meta = load(args.model_path, runtime="sparse", with_metadata=True)
    planned = plan_of(model)
    shape = args.input_shape or guess_input_shape(model, meta)
    if planned is not None and shape is not None and (args.input_shape or not planned.plans):
        planned.prepare(tuple(shape))
    text = planned.describe() if planned is not None else "sparse runtime: no plan"
    if planned is not None and shape is None and not planned.plans:
        text += "; pass --input-shape C,H,W to build it"
    summary["plan"] = text
    return f"\n{text}\n"


def _header_only(args: argparse.Namespace) -> bool:
    """A .snn file, and no flag that needs the weights (--weights is refused by the loader)."""
    from ..sources import source_kind

    if args.weights is not None or args.eps is not None or args.data:
        return False
    return source_kind(args.model_path) == "snn"


def _sparsity_info(args: argparse.Namespace, model: nn.Module, summary: dict[str, Any]) -> str:
    """With ``--eps``/``--data``: weight sparsity and Hoyer, activation sparsity. Returns text."""
    from ..regularize import activation_sparsity, format_activation_sparsity, weight_sparsity

    if getattr(args, "eps", None) is None and not getattr(args, "data", None):
        return ""
    eps = args.eps or 0.0
    ws = weight_sparsity(model, eps=eps)
    summary["weight_sparsity"] = ws
    rows = [
        "",
        "weight sparsity",
        f"{'layer':<12} {'zeros':>8} {'|w|<' + format(eps, 'g'):>10} {'hoyer':>6}",
    ]
    for name, r in ws["layers"].items():
        rows.append(
            f"{name:<12} {r['sparsity']:>8.2%} {r['sparsity_eps']:>10.2%} {r['hoyer']:>6.3f}"
        )
    tot = ws["total"]
    rows.append(f"{'total':<12} {tot['sparsity']:>8.2%} {tot['sparsity_eps']:>10.2%}")
    if args.data:
        data = load_dataset(args.data)
        x = data.x_test[: args.samples] if args.samples else data.x_test
        act = activation_sparsity(model, x)
        summary["activation_sparsity"] = {"dataset": data.name, **act}
        rows.append("")
        rows.append(format_activation_sparsity(act) + f" ({data.name} test)")
    return "\n".join(rows)
