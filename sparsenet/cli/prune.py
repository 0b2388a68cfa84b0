"""``sparsenet prune`` and ``sparsenet sensitivity``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..checkpoint import save_model
from ..data import Dataset, load_dataset
from ..errors import SparsenetError, SpecError
from ..fit_check import check_model_fits
from ..models import arch_of
from ..progress import log
from ..sources import load_model_source
from ..training import default_config, evaluate, seed_everything
from .common import (
    add_output_args,
    add_weights_arg,
    emit,
    nonneg_float,
    nonneg_int,
    parse_assignments,
    positive_float,
    positive_int,
    seed_int,
)

METHODS = ["magnitude", "obd", "random", "sparsegpt", "wanda", "obs"]
CALIBRATED = ("sparsegpt", "wanda", "obs")  # need calibration samples (layer inputs)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1]") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1]")
    return v


def _add_obd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--obd-form", choices=["auto", "lm", "full", "gauss-newton", "hutchinson"],
                   default="auto",
                   help="OBD Hessian: auto (default: LeCun's Levenberg-Marquardt recursion for "
                   "a chain, exact Gauss-Newton diagonal for other graphs), lm, full, "
                   "gauss-newton or hutchinson")
    p.add_argument("--obd-probes", type=positive_int, default=32,
                   help="Rademacher probes of --obd-form hutchinson (default 32)")
    p.add_argument("--obd-samples", type=positive_int, default=10_000,
                   help="training samples OBD averages its Hessian over (default 10000)")
    p.add_argument("--calibration", type=positive_int, default=1024,
                   help="training samples sparsegpt/wanda/obs record layer inputs on (default 1024)")
    p.add_argument("--blocksize", type=positive_int, default=128,
                   help="sparsegpt: columns per block (default 128)")
    p.add_argument("--damp", type=nonneg_float, default=0.01,
                   help="sparsegpt/obs: dampening, a fraction of the mean Hessian diagonal (0.01)")


def _criterion_options(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of every criterion; each takes its own (make_criterion)."""
    return {"form": args.obd_form, "probes": args.obd_probes, "samples": args.obd_samples,
            "calibration": args.calibration, "blocksize": args.blocksize, "damp": args.damp}


def register(sub: Any) -> None:
    p = sub.add_parser("prune", help="zero out weights: magnitude, OBD or random pruning")
    p.add_argument("model_path", metavar="MODEL")
    add_weights_arg(p)
    p.add_argument("--method", choices=METHODS, default="magnitude")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--sparsity", type=_fraction, help="fraction of weights to prune, e.g. 0.92")
    target.add_argument("--per-layer", help="fractions per layer, e.g. fc1=0.92,fc2=0.91,fc3=0.74")
    target.add_argument("--quality", type=nonneg_float,
                        help="Han's rule: prune |w| < QUALITY x std of the layer (magnitude)")
    p.add_argument("--scope", choices=["global", "layer"], default="global",
                   help="rank --sparsity across all layers (global, default) or within each")
    p.add_argument("--pattern", default=None, metavar="N:M",
                   help="N:M sparsity (e.g. 2:4: at most N non-zeros in every M inputs); "
                        "--sparsity defaults to 1 - N/M")
    sched = p.add_mutually_exclusive_group()
    sched.add_argument("--iterative", type=positive_int, default=1, metavar="K",
                       help="K rounds of prune -> retrain with growing sparsity (default 1)")
    sched.add_argument("--gradual", type=positive_int, metavar="EPOCHS",
                       help="train EPOCHS epochs pruning on Zhu & Gupta's cubic schedule")
    p.add_argument("--retrain-epochs", type=nonneg_int, default=0,
                   help="epochs of retraining after each round (default 0)")
    p.add_argument("--lr", type=positive_float,
                   help="retraining learning rate (default: the model's training lr / 10)")
    p.add_argument("--data", default=None,
                   help="data set for OBD, retraining and accuracy (default: the model's)")
    _add_obd_args(p)
    p.add_argument("--bake", action="store_true",
                   help="save without masks (zeros permanent, no longer protected in training)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True, help="pruned checkpoint (.pt)")
    add_output_args(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("sensitivity",
                       help="accuracy vs sparsity of each layer alone, no retraining (JSON + PNG)")
    p.add_argument("model_path", metavar="MODEL")
    add_weights_arg(p)
    p.add_argument("--method", choices=METHODS, default="magnitude")
    p.add_argument("--data", default=None, help="evaluation data set (default: the model's)")
    p.add_argument("--sparsities", default="0,0.3,0.5,0.6,0.7,0.8,0.9,0.95,0.98",
                   help="comma-separated fractions")
    p.add_argument("--layers", default=None, help="comma-separated layer names (default: all)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="evaluate on the first N test samples only")
    _add_obd_args(p)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True, help="directory for sensitivity.json and .png")
    add_output_args(p)
    p.set_defaults(func=cmd_sensitivity)


def _data(args: argparse.Namespace, meta: dict[str, Any], needed: bool) -> Dataset | None:
    name = args.data or meta.get("dataset")
    if not name:
        if needed:
            raise SparsenetError(f"{args.model_path}: no data set recorded; pass --data")
        return None
    return load_dataset(name)


def _fractions(spec: str) -> list[float]:
    out = []
    for part in spec.split(","):
        try:
            v = float(part)
        except ValueError:
            raise SpecError(f"bad sparsities {spec!r}: {part!r} is not a number") from None
        if not 0.0 <= v <= 1.0:
            raise SpecError(f"bad sparsities {spec!r}: {v} is not a fraction in [0, 1]")
        out.append(v)
    return out


def cmd_prune(args: argparse.Namespace) -> int:
    from ..prune import (
        PruneSchedule,
        make_criterion,
        prune,
        prune_gradual,
        prune_iterative,
        sparsity_report,
    )

    per_layer = parse_assignments(args.per_layer, float, "LAYER=FRACTION") if args.per_layer else None
    retrain = args.retrain_epochs > 0 or args.gradual is not None
    if args.quality is not None and args.method != "magnitude":
        raise SpecError(f"--quality (Han's rule) applies to --method magnitude, not {args.method!r}")
    if args.sparsity is None and per_layer is None and args.quality is None and not args.pattern:
        raise SpecError("give one pruning target: --sparsity, --per-layer, --quality or --pattern")
    if args.pattern:
        from ..prune import PruneSpec

        PruneSpec(sparsity=args.sparsity, per_layer=dict(per_layer or {}), quality=args.quality,
                  pattern=args.pattern)  # checks the pattern before any work
    model, meta = load_model_source(args.model_path, args.weights)
    data = _data(args, meta, needed=args.method in ("obd", *CALIBRATED) or retrain)
    if data is not None:
        check_model_fits(model, data, args.model_path)
    seed_everything(args.seed)
    # the criterion carries its options; OBD and the calibrated ones take their first
    # --obd-samples / --calibration training samples
    crit = make_criterion(args.method, data=data.train if data is not None else None,
                          seed=args.seed, **_criterion_options(args))
    target: dict[str, Any] = {"sparsity": args.sparsity, "per_layer": per_layer,
                              "quality": args.quality}
    before = evaluate(model, data.test) if data is not None else None
    arch = arch_of(model)
    cfg = (default_config(arch["name"], data.name) if arch and data else None)
    if cfg is not None:
        cfg = cfg.replace(quiet=args.quiet, seed=args.seed)
    history: list[dict[str, Any]] = []
    schedule = "one-shot"
    if args.gradual is not None:
        assert data is not None
        if per_layer is None and args.sparsity is None:
            raise SpecError("--gradual needs --sparsity or --per-layer (not --quality)")
        schedule = f"gradual({args.gradual} epochs)"
        plan = PruneSchedule(epochs=args.gradual, scope=args.scope, pattern=args.pattern,
                             lr=args.lr)
        prune_gradual(model, data.train, crit, per_layer or args.sparsity, schedule=plan,
                      config=cfg, seed=args.seed)
    elif args.iterative > 1 or retrain:
        assert data is not None
        schedule = f"iterative({args.iterative} x {args.retrain_epochs} epochs)"
        plan = PruneSchedule(steps=args.iterative, retrain_epochs=args.retrain_epochs,
                             scope=args.scope, pattern=args.pattern, lr=args.lr)
        history = prune_iterative(model, data.train, crit, **target, schedule=plan, config=cfg,
                                  val=data.test, seed=args.seed).history
    else:
        prune(model, crit, **target, scope=args.scope, pattern=args.pattern, seed=args.seed)
    report = sparsity_report(model)
    after = evaluate(model, data.test) if data is not None else None
    pruning = {
        "method": args.method,
        "target": {k: v for k, v in target.items() if v is not None},
        "scope": args.scope,
        **({"pattern": args.pattern} if args.pattern else {}),
        **({"calibration": args.calibration} if args.method in CALIBRATED else {}),
        "schedule": schedule,
        "baked": bool(args.bake),
        "sparsity": report["sparsity"],
        "source": os.fspath(args.model_path),
    }
    if args.method == "obd":
        from ..prune import resolve_form

        pruning["obd_form"] = resolve_form(model, args.obd_form)
    new_meta = {k: v for k, v in meta.items() if k not in ("history", "config")}
    new_meta.update(pruning=pruning, dataset=data.name if data else meta.get("dataset"))
    if after is not None:
        new_meta.update(test_accuracy=after["accuracy"], test_loss=after["loss"])
    if args.bake:
        from ..prune import bake

        bake(model)
    save_model(model, args.out, metadata=new_meta)
    result = {
        **pruning,
        "layers": report["layers"],
        "compression": report["compression"],
        "test_accuracy_before": before["accuracy"] if before else None,
        "test_accuracy": after["accuracy"] if after else None,
        "rounds": [{k: v for k, v in h.items() if k != "fit"} for h in history],
        "out": os.fspath(args.out),
    }

    def text() -> str:
        rows = [f"{'layer':<12} {'weights':>9} {'zeros':>9} {'sparsity':>9}"]
        rows += [f"{r['name']:<12} {r['size']:>9,} {r['zeros']:>9,} {r['sparsity']:>9.2%}"
                 for r in report["layers"]]
        rows.append(f"{'total':<12} {report['size']:>9,} {report['zeros']:>9,} "
                    f"{report['sparsity']:>9.2%}  ({report['compression']:.1f}x fewer weights)")
        if before and after:
            rows.append(f"test accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f}")
        rows.append(f"{args.method} {schedule} -> {args.out}")
        return "\n".join(rows)

    emit(args, result, text)
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from ..prune import sensitivity, write_sensitivity

    grid = _fractions(args.sparsities)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    model, meta = load_model_source(args.model_path, args.weights)
    data = _data(args, meta, needed=True)
    if data is not None:
        check_model_fits(model, data, args.model_path)
    assert data is not None
    x, y = data.test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    log(f"sensitivity of {args.model_path} ({args.method}) on {data.name}, n={len(x)}", args.quiet)
    n = args.calibration if args.method in CALIBRATED else args.obd_samples
    res = sensitivity(
        model, (x, y), args.method, grid, layers=layers,
        score_data=(data.x_train[:n], data.y_train[:n]),
        quiet=args.quiet, seed=args.seed, **_criterion_options(args),
    )
    res.update(model=os.fspath(args.model_path), dataset=data.name, n=len(x))
    paths = write_sensitivity(res, args.out)
    res["files"] = paths

    def text() -> str:
        head = f"{'layer':<10}" + "".join(f"{s:>7.0%}" for s in grid)
        rows = [head] + [
            f"{name:<10}" + "".join(f"{a:>7.2%}" for a in row["accuracy"])
            for name, row in res["layers"].items()
        ]
        return "\n".join(rows + [f"-> {paths['json']}, {paths['png']}"])

    emit(args, res, text)
    return 0
