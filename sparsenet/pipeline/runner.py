"""Running a recipe: the run directory, per-stage checkpoints, the manifest, resume and force.

Run directory layout::

    run-dir/
      manifest.json          recipe, per-stage status/metrics/records (atomic JSON)
      recipe.toml            nothing is read back from it; a copy for people
      stages/initial.pt      the model the pipeline started from
      stages/00-train.pt     checkpoint after each finished stage (sparsenet.checkpoint)
      stages/01-prune.pt ...
      model.snn              the encode stage's output unless --out says otherwise
      report/                report.md, report.json, PNGs (sparsenet.report)

A stage is reused on ``resume`` when it finished and the recipe up to and including it
(seed, model, data, its settings and all earlier stages') hashes the same as before; the
run then continues from the checkpoint of the last reusable stage. Every stage seeds
torch/numpy from ``(recipe.seed, stage index)`` before it starts, so an interrupted and
resumed run produces the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import load_model, save_model
from ..data import Dataset, holdout, load_dataset
from ..errors import SparsenetError
from ..fit_check import check_model_fits
from ..io import atomic_write_text, write_json
from ..layers import GROUPS, compressible_tensors, match
from ..models import arch_of, model_for_dataset
from ..paths import check_output
from ..progress import log, progress
from ..report import build_report, write_report
from ..report.sizes import model_size
from ..training import TrainConfig, evaluate, seed_everything
from .distributed import rank_zero_writes
from .manifest import MANIFEST, RUN_FORMAT, STAGE_FILE, RunError, read_manifest, stage_checkpoint
from .recipe import Recipe, RecipeError, load_recipe
from .stages import STAGES, StageContext, config_facts

__all__ = ["compress", "RunError", "MANIFEST", "read_manifest", "stage_metrics"]

def _prefix_digest(recipe: Recipe, index: int, config: dict[str, Any] | None = None) -> str:
    d = recipe.to_dict()
    d.pop("description", None)
    d.pop("name", None)
    d["stages"] = d["stages"][: index + 1]
    if config is not None:  # the user's TrainConfig: another set-up redoes every stage
        d["train_config"] = config
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_metrics(model: nn.Module, data: Dataset) -> dict[str, Any]:
    """Test accuracy/loss, weights, non-zeros and estimated storage of ``model``."""
    ev = evaluate(model, data.test)
    size = model_size(model)
    return {
        "accuracy": ev["accuracy"],
        "loss": ev["loss"],
        "weights": size["weights"],
        "nonzero": size["nonzero"],
        "density": size["nonzero"] / max(size["weights"], 1),
        "dense_bytes": size["dense_bytes"],
        "bytes": size["bytes"],
        "compression": size["dense_bytes"] / max(size["bytes"], 1e-9),
        "layers": size["layers"],
    }


def _resolve_model(model: nn.Module | str, data: Dataset, seed: int) -> tuple[nn.Module, bool, str]:
    """``(module, pretrained, source)`` from a module, a registry name or a checkpoint path."""
    if isinstance(model, nn.Module):
        return model, True, type(model).__name__
    if os.path.exists(model):
        from ..sources import load_model_source

        loaded, _meta = load_model_source(model)
        return loaded, True, os.fspath(model)
    seed_everything(seed)
    return model_for_dataset(model, data.input_shape, data.num_classes, seed=seed), False, model


def _model_name(model: nn.Module | str) -> str | None:
    """The registry name of ``model`` (module, model file or name), to pick recipe variants."""
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        from ..sources import load_model_source

        model = load_model_source(os.fspath(model))[0]
    if isinstance(model, nn.Module):
        arch = arch_of(model)
        return arch["name"] if arch else None
    return os.fspath(model)


def check_layer_names(recipe: Recipe, model: nn.Module) -> None:
    """Layer names in the recipe (prune ``per_layer``, factorize ``rank``, share ``bits``) must
    select compressible tensors of ``model`` (a group, name or glob, see
    :mod:`sparsenet.layers`); checked before anything runs. Names after a
    ``factorize`` stage are not checked (the factors are named ``<layer>.0``/``<layer>.1``)."""
    tensors = compressible_tensors(model)
    layers = [t.name for t in tensors]
    for i, st in enumerate(recipe.stages):
        if st.kind == "factorize" and isinstance(st.settings.get("rank"), dict):
            names, key = st.settings["rank"], "rank"
        elif st.kind == "prune" and "per_layer" in st.settings:
            names, key = st.settings["per_layer"], "per_layer"
        elif st.kind == "share":
            bits = st.settings["weight_bits"]
            names, key = {k: v for k, v in bits.items() if k not in GROUPS}, "weight_bits"
        else:
            names, key = {}, ""
        for name in names:
            if name not in GROUPS and not match(tensors, name):
                raise RecipeError(
                    f"stages[{i}].{st.kind}.{key}.{name}: no such layer in the model; "
                    f"expected one of: {', '.join(layers)}"
                )
        if st.kind == "factorize":
            return


class _Run:
    """One pipeline run over a run directory (see the module docstring)."""

    def __init__(self, recipe: Recipe, data: Dataset, run_dir: Path, out: Path | None,
                 quiet: bool, config: TrainConfig | None = None) -> None:
        self.recipe, self.data, self.dir, self.quiet = recipe, data, run_dir, quiet
        self.out = out
        self.bare: nn.Module | None = None  # the starting model, for loading custom models
        self.config = config
        self.config_facts = config_facts(config) if config is not None else None
        self._teacher: nn.Module | None = None

    def digest(self, index: int) -> str:
        return _prefix_digest(self.recipe, index, self.config_facts)

    def custom_bare(self) -> nn.Module | None:
        """The bare starting model if it is a custom (unregistered) architecture."""
        return self.bare if self.bare is not None and arch_of(self.bare) is None else None

    def ckpt(self, index: int | None) -> Path:
        return stage_checkpoint(self.dir, index, "" if index is None else self.recipe.stages[index].kind)

    def load(self, index: int | None) -> nn.Module:
        target = copy.deepcopy(self.bare) if self.bare is not None and arch_of(self.bare) is None else None
        model, _ = load_model(self.ckpt(index), model=target)
        return model

    def teacher(self) -> nn.Module:
        """The run's dense model, the teacher of a stage's ``distill``: the checkpoint of the
        recipe's first stage when that stage trains, else the model the run began with."""
        if self._teacher is None:
            first = self.recipe.stages[0].kind if self.recipe.stages else None
            self._teacher = self.load(0 if first == "train" else None)
        return self._teacher

    def encode_out(self, index: int) -> Path:
        if self.out is not None:
            return self.out
        configured = self.recipe.stages[index].settings.get("out")
        return Path(configured) if configured else self.dir / "model.snn"

    def reusable(self, old: dict[str, Any] | None, resume: bool) -> list[dict[str, Any]]:
        """The manifest entries of the leading stages whose finished results can be reused.

        A stage's entry comes from the manifest, or else from the record saved beside its
        checkpoint (``stages/NN-kind.json``): a run of a shorter recipe into the same
        directory (the budget search does this) keeps the manifest short but leaves the
        later stages' checkpoints and records, which a longer recipe can then reuse.
        """
        if not resume or old is None:
            return []
        entries = old.get("stages", [])
        done: list[dict[str, Any]] = []
        for i in range(len(self.recipe.stages)):
            found = [e for e in (entries[i] if i < len(entries) else None, self.record(i))
                     if isinstance(e, dict) and e.get("status") == "done"
                     and e.get("digest") == self.digest(i)]
            if not found or not self.ckpt(i).is_file():
                break
            e = found[0]
            if e.get("kind") == "encode":
                out = self.encode_out(i)
                if not out.is_file() or _sha256(out) != e.get("record", {}).get("sha256"):
                    break
            done.append(e)
        return done

    def record(self, index: int) -> dict[str, Any] | None:
        """The entry saved beside stage ``index``'s checkpoint (``None`` if absent or bad)."""
        path = self.ckpt(index).with_suffix(".json")
        try:
            got = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return got if isinstance(got, dict) and got.get("index") == index else None

    def write(self, manifest: dict[str, Any]) -> None:
        write_json(self.dir / MANIFEST, manifest)


@rank_zero_writes  # under torchrun only rank 0 writes the run directory (pipeline/distributed.py)
def compress(
    model: nn.Module | str,
    data: Dataset | str,
    recipe: Recipe | str | os.PathLike[str] | dict[str, Any],
    run_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    report: bool = True,
    config: TrainConfig | None = None,
    score_test: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Run a compression recipe on ``model`` and return ``(compressed model, report)``.

    Parameters
    ----------
    model : a trained ``nn.Module``, a checkpoint/``.snn`` path (trained), or a registry
        name such as ``"lenet300"`` (built fresh with the recipe's seed; the recipe's
        ``train`` stage trains it).
    data : a :class:`~sparsenet.data.Dataset` or its name (``"fashion-mnist"``, ``"digits"``).
    recipe : a built-in name (``"deep-compression"``), a ``.toml`` path, plain data or a Recipe.
        The whole recipe is validated before anything runs.
    run_dir : where checkpoints, the manifest and the report go (default: a new temp dir).
    out : path of the ``.snn`` (default: the encode stage's ``out`` or ``run_dir/model.snn``).
    resume : reuse finished stages of an earlier run in ``run_dir`` (same recipe prefix).
    force : start over even if ``run_dir`` holds a finished or different run.
    report : write ``run_dir/report/`` (report.md, report.json, PNGs).
    config : the user's own training set-up (optimizer, lr, batch size, loss...). The
        train stage and every retraining/fine-tuning stage start from it (retraining at
        ``lr × lr_factor``; a stage may set its own ``optimizer``, ``lr``, ``batch_size``).
        Default: the registry's :func:`~sparsenet.training.default_config` for the model.
        It is part of every stage's resume digest.
    score_test : with a recipe ``holdout`` (stages score on validation images held out of
        the training set), score the dense and the final model on the test set once the
        last stage is done (``manifest["test"]``); ``False`` for trials that must not see it.

    Returns
    -------
    (model, report) where ``report`` is the report.json dict: per-stage accuracy and
    compression, the per-layer table, the file size, the run directory.
    """
    recipe_obj = load_recipe(recipe, model=_model_name(model))
    for s in recipe_obj.stages:
        if s.kind not in STAGES:  # pragma: no cover - schema and registry are kept in step
            raise SparsenetError(f"stage {s.kind!r} has no implementation")
    data_obj = load_dataset(data) if isinstance(data, str) else data
    # With a holdout the stages train on the rest of the training images and score on the
    # held-out ones; the test set is scored once, after the last stage (_score_test).
    stage_data = holdout(data_obj, recipe_obj.holdout) if recipe_obj.holdout else data_obj
    # The data set and model source are part of every stage's digest: a resume with other
    # data or another starting model recomputes everything.
    recipe_obj = recipe_obj.with_overrides(
        data=data_obj.name, model=os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    )
    rdir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="sparsenet-run-"))
    run = _Run(recipe_obj, data_obj, rdir, Path(out) if out is not None else None, quiet,
               config=config)
    # Every output is checked before any work (a bad --out fails now, not after training).
    check_output(rdir, "dir", flag="--run-dir")
    model_path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    for i, st in enumerate(recipe_obj.stages):
        if st.kind == "encode":
            check_output(run.encode_out(i), "snn", inputs=[model_path],
                         flag="--out" if out is not None else "the .snn output")

    old = read_manifest(rdir) if (rdir / MANIFEST).is_file() else None
    if old is not None and not resume and not force:
        raise RunError(
            f"{rdir}: already holds a run; pass --resume to continue it or --force to start over"
        )
    module, pretrained, source = _resolve_model(model, data_obj, recipe_obj.seed)
    check_layer_names(recipe_obj, module)
    check_model_fits(module, data_obj, source)
    if any(st.kind == "encode" for st in recipe_obj.stages):
        from ..graph import check_recordable

        check_recordable(module)  # an untraceable custom model fails now, not after training
    if config is None and arch_of(module) is None:
        log("no config= given for a custom model: training stages use the generic "
            "TrainConfig() (SGD, lr 0.05); pass config=TrainConfig(...) for your own set-up", quiet)
    log(f"pipeline {recipe_obj.name} on {source} ({data_obj.name}), run directory {rdir}", quiet)
    if resume and old is not None and not force and not run.reusable(old, resume) \
            and old.get("digest") != recipe_obj.digest():
        # Nothing of the old run would be reused: refuse before touching its files.
        raise RunError(
            f"{rdir}: holds a run of another recipe ({old['recipe'].get('name')!r}, "
            f"digest {old.get('digest')}) and none of its stages match this one; pass --force "
            "to replace it or choose another --run-dir"
        )
    if force:
        _remove_run_files(rdir)
        old = None
    reused = run.reusable(old, resume)
    start = len(reused)
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / "stages").mkdir(exist_ok=True)

    same_start = old is not None and old.get("recipe", {}).get("model") == recipe_obj.model
    if old is not None and resume and same_start and run.ckpt(None).is_file():
        initial = old["initial"]
        run.bare = model if isinstance(model, nn.Module) else None
        pretrained = bool(initial["pretrained"])
        source = initial["source"]
    else:
        run.bare = copy.deepcopy(module)
        save_model(module, run.ckpt(None), metadata={"source": source})
        start = 0
        initial = {"source": source, "pretrained": pretrained, "arch": arch_of(module),
                   "metrics": stage_metrics(module, stage_data)}
    atomic_write_text(rdir / "recipe.toml", _to_toml(recipe_obj))
    manifest: dict[str, Any] = {
        "format": RUN_FORMAT,
        "version": 1,
        "recipe": recipe_obj.to_dict(),
        "recipe_source": recipe_obj.source,
        "digest": recipe_obj.digest(),
        "data": data_obj.name,
        "initial": initial,
        "stages": reused[:start],
    }
    if run.config_facts is not None:
        manifest["train_config"] = run.config_facts
    run.write(manifest)
    current = run.load(start - 1 if start > 0 else None)
    if start > 0:
        log(f"resuming {rdir}: {start} finished stage(s) reused", quiet)

    n = len(recipe_obj.stages)
    # One bar over the stages; inside each, fit draws its own bar per epoch.
    for i in progress(range(start, n), desc=recipe_obj.name, total=n - start, quiet=quiet,
                      unit="stage", position=0):
        st = recipe_obj.stages[i]
        ctx = StageContext(recipe=recipe_obj, index=i, stage=st, data=stage_data,
                           pretrained=pretrained, quiet=quiet, work_dir=rdir,
                           out=run.encode_out(i) if st.kind == "encode" else None,
                           config=config, bare=run.custom_bare(), teacher_loader=run.teacher)
        entry: dict[str, Any] = {"index": i, "kind": st.kind, "settings": st.settings,
                                 "digest": run.digest(i), "status": "running"}
        manifest["stages"].append(entry)
        run.write(manifest)
        log(f"[{i + 1}/{n}] {st.kind} {_brief(st.settings)}", quiet)
        seed_everything(ctx.seed)
        t0 = time.perf_counter()
        try:
            current = STAGES[st.kind](current, ctx)
        except BaseException as exc:
            entry["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            run.write(manifest)
            raise
        if st.kind == "encode" and ctx.out is not None:
            ctx.record["sha256"] = _sha256(ctx.out)
        metrics = stage_metrics(current, stage_data)
        if "file_bytes" in ctx.record:
            metrics["bytes"] = ctx.record["file_bytes"]
        # against the dense starting model (a factorised model's own dense size is smaller)
        metrics["compression"] = initial["metrics"]["dense_bytes"] / max(metrics["bytes"], 1)
        save_model(current, run.ckpt(i), metadata={"stage": st.kind, "index": i,
                                                   "accuracy": metrics["accuracy"]})
        entry.update(status="done", seconds=time.perf_counter() - t0, metrics=metrics,
                     record=ctx.record)
        write_json(run.ckpt(i).with_suffix(".json"), entry)  # see _Run.reusable
        run.write(manifest)
        log(f"[{i + 1}/{n}] {st.kind} done: accuracy {metrics['accuracy']:.4f}, "
            f"{metrics['compression']:.1f}x ({entry['seconds']:.1f}s)", quiet)

    if recipe_obj.holdout and score_test:
        manifest["test"] = _score_test(run, current, data_obj, recipe_obj.holdout)
        run.write(manifest)
    result: dict[str, Any]
    if report:
        result = write_report(rdir, model=run.bare if arch_of(current) is None else None)
    else:
        result = build_report(rdir)
    return current, result


def _score_test(run: _Run, final: nn.Module, data: Dataset, held: int) -> dict[str, Any]:
    """Test-set accuracy of the dense reference (after the train stage if it ran, else the
    starting model) and of the final model: the one look at the test set of a holdout run."""
    trained = bool(run.recipe.stages) and run.recipe.stages[0].kind == "train"
    dense = run.load(0 if trained else None)
    return {"validation_images": held,
            "dense": evaluate(dense, data.test)["accuracy"],
            "final": evaluate(final, data.test)["accuracy"]}


def _remove_run_files(rdir: Path) -> None:
    """``--force``: remove what an earlier sparsenet run wrote, and nothing else.

    Only a directory holding a run manifest has run files; there the stage checkpoints
    (``stages/initial.pt``, ``stages/NN-<kind>.pt``) and the manifest go. Any other file,
    in ``stages/`` or not, stays; ``stages/`` itself goes only when left empty.
    """
    if not (rdir / MANIFEST).is_file():
        return
    stages = rdir / "stages"
    if stages.is_dir():
        for f in stages.iterdir():
            if f.is_file() and not f.is_symlink() and STAGE_FILE.match(f.name):
                f.unlink()
        if not any(stages.iterdir()):
            stages.rmdir()
    (rdir / MANIFEST).unlink()


def _brief(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items() if not isinstance(v, dict))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _to_toml(recipe: Recipe) -> str:
    """The normalised recipe as TOML (parses back to the same recipe)."""
    d = recipe.to_dict()
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if k != "stages"]
    for entry in d["stages"]:
        ((kind, settings),) = entry.items()
        lines += ["", "[[stages]]", f"[stages.{kind}]"]
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"
