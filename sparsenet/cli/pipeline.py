"""``sparsenet run RECIPE``, ``sparsenet compress --recipe ...`` and ``sparsenet report RUN_DIR``.

``compress`` is shared with :mod:`sparsenet.cli.coding` (``sparsenet compress MODEL.pt
--weight-bits ... --coder ...``, the single-step form). Whichever module registers first owns the
parser; this one then adds ``--recipe`` and its options to it and dispatches: with
``--recipe`` the pipeline runs (:func:`cmd_compress_recipe`), without it the coding
command's own handler does.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..distributed import is_main
from ..errors import SparsenetError
from ..sources import load_model_source, source_kind
from .common import (
    add_output_args,
    confidence_float,
    duration,
    emit,
    nonneg_float,
    nonneg_int,
    seed_int,
)

__all__ = ["register", "cmd_run", "cmd_compress_recipe", "cmd_report"]


def _run_args(p: argparse.ArgumentParser, existing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    def add(flag: str, **kw: Any) -> None:
        if flag not in existing:
            p.add_argument(flag, **kw)

    add("--run-dir", help="checkpoints, manifest and report go here (default: runs/<recipe>-<model>)")
    add("--resume", action="store_true", help="continue a crashed or interrupted run in --run-dir")
    add("--force", action="store_true", help="start over even if --run-dir holds a run")
    add("--seed", type=seed_int, help="override the recipe's seed")
    add("--check", action="store_true", help="validate the recipe, print it and stop")
    add("--threads", type=nonneg_int, default=0,
        help="torch CPU threads (0: torch's default); 1 is fastest on a busy shared machine")
    add("--weights", metavar="STATE_DICT.pt",
        help="with --model = a registry name or package.module:factory: its state dict")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a compression recipe (TOML) end to end")
    p.add_argument("recipe", metavar="RECIPE", help="a recipe .toml file or a built-in name")
    p.add_argument("--model", help="registry name or model file (default: the recipe's `model`)")
    p.add_argument("--data", help="data set (default: the recipe's `data`)")
    p.add_argument("--out", help="the .snn file (default: the encode stage's `out` or RUN_DIR/model.snn)")
    _run_args(p)
    add_output_args(p)
    p.set_defaults(func=cmd_run)

    existing = sub.choices.get("compress")
    if existing is None:
        p = sub.add_parser("compress", help="compress a model with a recipe (Deep Compression)")
        p.add_argument("--recipe", help="built-in name or .toml file")
        p.add_argument("--model", help="registry name (trained first) or model file "
                       "(default: the recipe's `model`)")
        p.add_argument("--data", help="data set name or IDX directory (default: the recipe's "
                       "`data`, else fashion-mnist)")
        p.add_argument("--out", help="the .snn file (default: RUN_DIR/model.snn)")
        _run_args(p)
        _search_args(p)
        add_output_args(p)
        p.set_defaults(func=_dispatch_standalone)
    else:  # the coding command owns `compress`: add --recipe and dispatch on it
        _extend_compress(existing)

    p = sub.add_parser("report", help="regenerate the report of a pipeline run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="report folder (default: RUN_DIR/report)")
    add_output_args(p)
    p.set_defaults(func=cmd_report)


def _extend_compress(existing: argparse.ArgumentParser) -> None:
    """Make the single-step ``compress MODEL.pt --out F`` parser also take ``--recipe``.

    Its positional MODEL becomes optional (``--model`` names the model with a recipe) and
    the handler dispatches: with ``--recipe`` the pipeline, without it the single step,
    which still requires MODEL and ``--out``.
    """
    have = {s for a in existing._actions for s in a.option_strings}
    single = existing.get_default("func")
    positional = [a for a in existing._actions if not a.option_strings and a.dest != "help"]
    out_action = next((a for a in existing._actions if "--out" in a.option_strings), None)
    for action in positional:
        action.nargs, action.required, action.default = "?", False, None
    if out_action is not None:
        out_action.required = False
    existing.add_argument("--recipe", help="run a pipeline recipe (built-in name or .toml)")
    if "--model" not in have:
        existing.add_argument("--model", help="with --recipe: registry name or model file")
    if "--data" not in have:
        existing.add_argument("--data", default=None,
                              help="with --recipe: data set (default: the recipe's `data`, "
                              "else fashion-mnist)")
    _run_args(existing, have)
    _search_args(existing)

    def dispatch(args: argparse.Namespace) -> int:
        if getattr(args, "max_drop", None) is not None or getattr(args, "time_budget", None) \
                or getattr(args, "confidence", None) is not None:
            return cmd_compress_search(args)
        if getattr(args, "recipe", None):
            return cmd_compress_recipe(args)
        missing = [a.metavar or a.dest for a in positional if getattr(args, a.dest) is None]
        if out_action is not None and getattr(args, out_action.dest) is None:
            missing.append("--out")
        if missing:
            raise SparsenetError(
                f"compress: {' and '.join(map(str, missing))} required (or --recipe NAME --model M)"
            )
        return int(single(args) or 0)

    existing.set_defaults(func=dispatch)


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-drop", type=nonneg_float, metavar="POINTS",
                   help="search for the smallest file whose validation accuracy is within "
                   "POINTS accuracy points of dense (instead of --recipe)")
    p.add_argument("--time-budget", type=duration, metavar="T",
                   help="with --max-drop: stop searching after T (90s, 30m, 1.5h), then finish")
    p.add_argument("--confidence", type=confidence_float, metavar="P",
                   help="with --max-drop: keep a point only if its drop is within the budget "
                   "with probability P (a margin of z·√d/n, d of the n validation images "
                   "labelled unlike dense; default 0.5: the drop as measured)")


def _dispatch_standalone(args: argparse.Namespace) -> int:
    if args.max_drop is not None or args.time_budget is not None or args.confidence is not None:
        return cmd_compress_search(args)
    if not args.recipe:
        raise SparsenetError("compress: pass --recipe NAME|FILE, or --max-drop POINTS to search")
    return cmd_compress_recipe(args)


def cmd_compress_search(args: argparse.Namespace) -> int:
    """``sparsenet compress --model M --data D --max-drop 0.3 --out F.snn [--time-budget 30m]``."""
    from ..pipeline import compress

    if getattr(args, "recipe", None):
        raise SparsenetError(f"--max-drop searches for its own recipe; it cannot be combined "
                             f"with --recipe {args.recipe!r}")
    if args.max_drop is None:
        flag = "--confidence" if args.confidence is not None else "--time-budget"
        raise SparsenetError(f"{flag} goes with --max-drop POINTS")
    if getattr(args, "check", False) or getattr(args, "seed", None) is not None:
        raise SparsenetError("--check and --seed go with --recipe, not --max-drop")
    model = getattr(args, "model", None) or getattr(args, "model_path", None)
    if not model:
        raise SparsenetError("no model: pass --model NAME|FILE")
    data = getattr(args, "data", None) or "fashion-mnist"
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    stem = Path(model).stem if os.path.exists(model) else model.replace(":", "-")
    run_dir = args.run_dir or os.path.join("runs", f"smallest-{stem}")
    source: Any = model
    if getattr(args, "weights", None) or source_kind(model) in ("factory", "pt2"):
        source = load_model_source(model, args.weights)[0]
    settings = None
    if args.confidence is not None:
        from ..pipeline import SearchSettings

        settings = SearchSettings(max_drop=args.max_drop, confidence=args.confidence)
    _model, rep = compress(source, data, "smallest", run_dir=run_dir, out=getattr(args, "out", None),
                           resume=args.resume, force=args.force, quiet=args.quiet,
                           max_drop=args.max_drop, time_budget=args.time_budget,
                           settings=settings)
    f, b = rep["final"], rep["baseline"]
    text = (
        f"validation accuracy {b['accuracy']:.4f} -> {f['accuracy']:.4f}; test accuracy "
        f"{b['test_accuracy']:.4f} -> {f['test_accuracy']:.4f}; {f['compression']:.1f}x smaller, "
        f"{f['file_bytes']:,} bytes -> {f['file']}; recipe: {rep['search']['recipe']}; "
        f"report: {os.path.join(run_dir, 'report', 'report.md')}"
    )
    if is_main():
        emit(args, rep, text)
    return 0


def _model_name(model: str) -> str | None:
    from ..pipeline.runner import _model_name as name_of

    return name_of(model)


def _execute(args: argparse.Namespace, recipe_src: str, model: str | None, data: str | None,
             default_data: str | None = None) -> int:
    from ..pipeline import compress, load_recipe

    recipe = load_recipe(recipe_src, model=_model_name(model) if model else None)
    if args.seed is not None:
        recipe = recipe.with_overrides(seed=args.seed)
    model = model or recipe.model
    data = data or recipe.data or default_data
    if args.check:
        from ..pipeline.runner import _to_toml

        if is_main():
            emit(args, recipe.to_dict(), lambda: _to_toml(recipe).rstrip("\n"))
        return 0
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    if not model:
        raise SparsenetError("no model: pass --model NAME|FILE or set `model` in the recipe")
    if not data:
        raise SparsenetError("no data set: pass --data NAME or set `data` in the recipe")
    stem = Path(model).stem if os.path.exists(model) else model.replace(":", "-")
    run_dir = args.run_dir or os.path.join("runs", f"{recipe.name}-{stem}")
    source: Any = model
    user = ":" in model or model.endswith(".pt2")  # names and .pt/.snn files: the runner's
    if getattr(args, "weights", None) or (user and source_kind(model) in ("factory", "pt2")):
        source = load_model_source(model, args.weights)[0]  # a trained user model
    _model, rep = compress(source, data, recipe, run_dir=run_dir, out=getattr(args, "out", None),
                           resume=args.resume, force=args.force, quiet=args.quiet)
    f = rep["final"]
    text = (
        f"accuracy {rep['baseline']['accuracy']:.4f} -> {f['accuracy']:.4f}, "
        f"{f['compression']:.1f}x smaller"
        + (f", {f['file_bytes']:,} bytes -> {f['file']}" if f.get("file") else "")
        + f"; report: {os.path.join(run_dir, 'report', 'report.md')}"
    )
    if is_main():  # under torchrun the other ranks ran quietly into scratch directories
        emit(args, rep, text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(args, args.recipe, args.model, args.data)


def cmd_compress_recipe(args: argparse.Namespace) -> int:
    """``sparsenet compress --recipe NAME --model M --data D --out F.snn``."""
    # The recipe's own `model` and `data` count, as in `sparsenet run` (flags override them).
    model = getattr(args, "model", None) or getattr(args, "model_path", None)
    return _execute(args, args.recipe, model, getattr(args, "data", None),
                    default_data="fashion-mnist")


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report

    rep = write_report(args.run_dir, out=args.out)
    out = args.out or os.path.join(args.run_dir, "report")
    f = rep["final"]
    emit(args, rep, f"{out}/report.md: accuracy {f['accuracy']:.4f}, {f['compression']:.1f}x smaller")
    return 0
