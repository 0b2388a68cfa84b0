"""The smallest file within an accuracy budget: ``compress(model, data, "smallest", max_drop=0.3)``.

The search writes a recipe, one stage at a time, and runs it with the ordinary runner, so
the recipe it ends with (``run_dir/recipe.toml``) *is* the result: ``sparsenet run`` on it
replays the same stages with the same seeds and writes the same ``.snn`` bytes.

Method (``docs/pipeline.md``, "The smallest file within a budget", says why):

1. **Honest scores.** ``holdout`` training images (5,000 of Fashion-MNIST's 60,000,
   proportionally fewer for smaller sets; :func:`sparsenet.data.validation_size`) are held
   out, stratified; every stage trains on the rest and every decision is scored on them.
   The test set is scored once, after the last stage. The budget is
   ``validation accuracy >= dense validation accuracy - max_drop``.
2. **Warm start.** Global magnitude pruning to ``warmup_sparsity`` with retraining (the
   part every budget affords), kept only if it meets the budget.
3. **Greedy marginal allocation.** A *move* either prunes one layer further (removes
   ``step`` of its remaining weights) or takes one bit off one layer's codebook. Every move
   is *probed* without retraining (:mod:`sparsenet.pipeline.probe`): the model shared at its
   current bits and written by the real encoder, so a move's price is the file bytes it
   saves per validation point it costs. Moves are tried from the best price down; a bit
   move is accepted if its probe meets the budget; a prune move becomes a prune stage with
   ``retrain_epochs`` of retraining and is accepted if the retrained model, probed, meets
   it. A rejected prune move halves that layer's step (down to ``min_step``); a rejected bit
   move closes that layer's bits. The search stops when no move is left or the time budget
   is spent.
4. **Final point.** A last retraining of ``final_epochs`` at the chosen sparsities, k-means
   sharing at the chosen bits with ``finetune_epochs`` of centroid fine-tuning, and Huffman
   coding with per-layer gap widths (``index_bits = "auto"``). If that final model misses
   the budget on the validation split, the last accepted moves are undone one by one.

Everything resumes after a kill: stages through the runner's checkpoints, probes and
decisions through the journal ``run_dir/search.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data import Dataset, holdout, load_dataset, validation_size
from ..errors import SparsenetError, SpecError
from ..layers import compressible_tensors
from ..models import arch_of
from ..paths import check_output
from ..progress import log
from ..training import TrainConfig, default_config, evaluate
from .probe import Journal, Probe, probe, state_key
from .runner import MANIFEST, RunError
from .runner import compress as run_recipe

__all__ = ["SearchSettings", "smallest", "BudgetError"]

# A prune move never takes a layer past this density floor (a layer with no weights left
# cuts the network).
MAX_SPARSITY = 0.998
_START_BITS = {"conv": 8, "fc": 6, "embedding": 8, "attention": 6}


class BudgetError(SparsenetError):
    """No setting the search tried meets the accuracy budget."""


@dataclass(frozen=True)
class SearchSettings:
    """Options of the search (see the module docstring for what each step does).

    Parameters
    ----------
    max_drop : accuracy points the validation accuracy may lose (0.3 = 0.3 points).
    time_budget : seconds of searching before the final stages run (``None``: no limit).
    holdout : validation images held out of the training set (``None``: 1/12 of it).
    warmup_sparsity, warmup_iterations : the global magnitude warm start.
    prune_step, min_step : fraction of a layer's remaining weights one prune move removes,
        and the smallest step tried after rejections halve it.
    retrain_epochs, lr_factor : retraining after each prune move, at the training lr × factor.
    recover_rounds : a prune move that misses the budget after its retraining gets up to
        this many more rounds of ``retrain_epochs`` while each one gains accuracy.
    verify_epochs : a move whose probe misses the budget is judged again after this many
        epochs of centroid fine-tuning (what the final share stage does at more length).
    start_bits, min_bits : codebook bits per layer kind at the start, and the fewest tried.
    final_epochs, finetune_epochs : the final retraining and the centroid fine-tuning.
    seed : the recipe's seed.
    """

    max_drop: float
    time_budget: float | None = None
    holdout: int | None = None
    warmup_sparsity: float = 0.8
    warmup_iterations: int = 2
    prune_step: float = 0.25
    min_step: float = 0.06
    retrain_epochs: int = 3
    recover_rounds: int = 2
    verify_epochs: int = 1
    lr_factor: float = 0.1
    start_bits: dict[str, int] = field(default_factory=lambda: dict(_START_BITS))
    min_bits: int = 2
    final_epochs: int = 8
    finetune_epochs: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise SpecError(f"bad {name} {getattr(self, name)!r}; expected {expected}")

        def finite(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(finite(self.max_drop) and 0 <= self.max_drop <= 100, "max_drop",
             "accuracy points between 0 and 100")
        need(self.time_budget is None or (finite(self.time_budget) and self.time_budget > 0),
             "time_budget", "seconds > 0")
        need(self.holdout is None or (isinstance(self.holdout, int) and self.holdout > 0),
             "holdout", "a number of images > 0")
        need(0 <= self.warmup_sparsity < 1, "warmup_sparsity", "a fraction in [0, 1)")
        need(0 < self.min_step <= self.prune_step < 1, "prune_step", "0 < min_step <= prune_step < 1")
        need(1 <= self.min_bits <= 8, "min_bits", "1 to 8")
        need(0 < self.lr_factor <= 1, "lr_factor", "a factor in (0, 1]")
        for name in ("warmup_iterations", "retrain_epochs", "recover_rounds", "verify_epochs",
                     "final_epochs", "finetune_epochs"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                 "an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    """Where the search stands: the recipe's stages, per-layer targets, and the model."""

    stages: list[dict[str, Any]]
    sparsity: dict[str, float]
    bits: dict[str, int]
    model: nn.Module
    moves: list[dict[str, Any]] = field(default_factory=list)  # accepted, in order


class _Search:
    def __init__(self, model: nn.Module | str, data: Dataset, settings: SearchSettings,
                 rdir: Path, out: Path, quiet: bool, config: TrainConfig | None,
                 journal: Journal, held: int) -> None:
        self.source, self.data, self.s, self.dir, self.out = model, data, settings, rdir, out
        self.quiet, self.config, self.journal, self.held = quiet, config, journal, held
        split = holdout(data, held)
        self.val, self.train = split.test, split.train
        self.dense: nn.Module | None = None
        self.scratch = rdir / "search-probe.snn"
        self.started = time.monotonic()
        self.floor = 0.0
        self.first_run = True

    # -- running stages ------------------------------------------------------------------
    def recipe(self, stages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": "smallest", "seed": self.s.seed, "holdout": self.held,
                "description": f"smallest .snn within {self.s.max_drop:g} validation points "
                               "(sparsenet compress --max-drop)",
                "stages": stages}

    def digest(self, stages: list[dict[str, Any]]) -> str:
        return hashlib.sha256(json.dumps(stages, sort_keys=True).encode()).hexdigest()[:16]

    def run(self, stages: list[dict[str, Any]], final: bool = False,
            force: bool = False) -> tuple[nn.Module, dict[str, Any]]:
        model, rep = run_recipe(
            self.source, self.data, self.recipe(stages), run_dir=self.dir,
            out=self.out if final else None, resume=not force, force=force,
            quiet=self.quiet or not final, report=final, config=self.config, score_test=final)
        return model, rep

    # -- probes ----------------------------------------------------------------------------
    def probe(self, st: _State, sparsity: dict[str, float], bits: dict[str, int],
              verify: bool = False) -> Probe:
        """The probe of ``st.model`` at these targets; ``verify``: after centroid fine-tuning."""
        key = state_key(sparsity, bits, self.digest(st.stages) + ("+ft" if verify else ""))
        got = self.journal.cached(key)
        if got is None:
            ft = (self.train, self.finetune_config()) if verify else None
            got = probe(st.model, sparsity, bits, self.val, self.scratch,
                        {"dataset": self.data.name, "recipe": "smallest"}, seed=self.s.seed,
                        finetune=ft)
            self.journal.remember(key, got)
        return got

    def judge(self, st: _State, sparsity: dict[str, float], bits: dict[str, int]) -> Probe:
        """The probe, and if it misses the budget the fine-tuned probe (the verdict)."""
        p = self.probe(st, sparsity, bits)
        if p.accuracy >= self.floor or not self.s.verify_epochs:
            return p
        return self.probe(st, sparsity, bits, verify=True)

    def finetune_config(self) -> TrainConfig:
        arch = arch_of(self.dense) if self.dense is not None else None
        base = self.config or default_config(arch["name"] if arch else "custom", self.data.name)
        return base.replace(epochs=self.s.verify_epochs, lr=1e-3, optimizer="adam",
                            seed=self.s.seed, quiet=True)

    def over_time(self) -> bool:
        return self.s.time_budget is not None and \
            time.monotonic() - self.started > self.s.time_budget

    def note(self, step: dict[str, Any]) -> None:
        self.journal.steps.append(step)
        self.journal.save()

    # -- the search ------------------------------------------------------------------------
    def start(self, force: bool) -> _State:
        stages: list[dict[str, Any]] = [{"train": {"skip_if_trained": True}}]
        model, _ = self.run(stages, force=force)
        self.dense = model
        names = {t.name: t.kind for t in compressible_tensors(model)}
        if not names:
            raise SparsenetError("nothing to compress: the model has no compressible weights")
        bits = {n: self.s.start_bits.get(k, 8) for n, k in names.items()}
        st = _State(stages, dict.fromkeys(names, 0.0), bits, model)
        dense = float(evaluate(model, *self.val)["accuracy"])
        self.floor = dense - self.s.max_drop / 100
        self.journal.facts.update(dense_validation=dense, floor=self.floor, layers=list(names))
        p = self.probe(st, st.sparsity, bits)
        log(f"search: dense validation accuracy {dense:.4f} on {self.held:,} held-out images; "
            f"budget >= {self.floor:.4f}; shared at {bits}: {p.bytes:,} B, {p.accuracy:.4f}",
            self.quiet)
        self.note({"move": "start", "bytes": p.bytes, "accuracy": p.accuracy, "accepted": True})
        if self.s.warmup_sparsity > 0:
            self.warm_start(st)
        return st

    def warm_start(self, st: _State) -> None:
        s = self.s
        stage = {"prune": {"method": "magnitude", "sparsity": s.warmup_sparsity,
                           "iterations": max(s.warmup_iterations, 1),
                           "retrain_epochs": s.retrain_epochs, "lr_factor": s.lr_factor}}
        model, _ = self.run([*st.stages, stage])
        sparsity = {t.name: _zeros(t) for t in compressible_tensors(model)}
        trial = _State([*st.stages, stage], sparsity, st.bits, model)
        p = self.judge(trial, sparsity, st.bits)
        ok = p.accuracy >= self.floor
        self.note({"move": "warm start", "sparsity": s.warmup_sparsity, "bytes": p.bytes,
                   "accuracy": p.accuracy, "accepted": ok})
        log(f"search: warm start to {s.warmup_sparsity:g} global sparsity: {p.bytes:,} B, "
            f"{p.accuracy:.4f} ({'kept' if ok else 'over budget, dropped'})", self.quiet)
        if ok:
            st.moves.append({"kind": "warm", "stages": st.stages, "sparsity": st.sparsity,
                             "model": st.model})
            st.stages, st.sparsity, st.model = trial.stages, sparsity, model

    def moves(self, st: _State, step: dict[str, float], closed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n in st.sparsity:
            if step[n] >= self.s.min_step and st.sparsity[n] < MAX_SPARSITY:
                target = min(MAX_SPARSITY, 1 - (1 - st.sparsity[n]) * (1 - step[n]))
                out.append({"kind": "prune", "layer": n, "to": round(target, 6)})
            if st.bits[n] > self.s.min_bits and n not in closed:
                out.append({"kind": "bits", "layer": n, "to": st.bits[n] - 1})
        return out

    def targets(self, st: _State, mv: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
        sparsity, bits = dict(st.sparsity), dict(st.bits)
        (sparsity if mv["kind"] == "prune" else bits)[mv["layer"]] = mv["to"]
        return sparsity, bits

    def greedy(self, st: _State) -> None:
        step = dict.fromkeys(st.sparsity, self.s.prune_step)
        closed: set[str] = set()
        n_val = len(self.val[1])
        while not self.over_time():
            cur = self.probe(st, st.sparsity, st.bits)
            priced = []
            for mv in self.moves(st, step, closed):
                sp, bits = self.targets(st, mv)
                p = self.probe(st, sp, bits)
                gain, loss = cur.bytes - p.bytes, cur.accuracy - p.accuracy
                # bytes saved per accuracy lost; a move that loses nothing counts one image
                priced.append((gain / max(loss, 1 / n_val), mv, p, gain))
            priced.sort(key=lambda x: -x[0])
            for price, mv, p, gain in priced:
                if gain <= 0:
                    self.close(mv, step, closed)
                    continue
                if self.try_move(st, mv, p, price):
                    break
                self.close(mv, step, closed)
            else:
                return
        log(f"search: time budget of {self.s.time_budget:g} s spent; finishing", self.quiet)

    def close(self, mv: dict[str, Any], step: dict[str, float], closed: set[str]) -> None:
        if mv["kind"] == "bits":
            closed.add(mv["layer"])
        else:
            step[mv["layer"]] /= 2

    def try_move(self, st: _State, mv: dict[str, Any], p: Probe, price: float) -> bool:
        sparsity, bits = self.targets(st, mv)
        record = {"move": f"{mv['kind']} {mv['layer']} -> {mv['to']}", "price": price,
                  "probe_bytes": p.bytes, "probe_accuracy": p.accuracy}
        if mv["kind"] == "bits":
            p = self.judge(st, sparsity, bits)
            ok = p.accuracy >= self.floor
            if ok:
                st.bits = bits
                st.moves.append({"kind": "bits", "layer": mv["layer"], "from": mv["to"] + 1})
            self.report(record, p, ok)
            return ok
        ok, q = self.prune_move(st, sparsity, bits)
        if ok:
            st.moves.append({"kind": "prune", "layer": mv["layer"], "stages": st.stages,
                             "sparsity": st.sparsity, "model": st.model})
        self.report(record, q, ok)
        return ok

    def prune_stage(self, sparsity: dict[str, float]) -> dict[str, Any]:
        return {"prune": {"method": "magnitude", "per_layer": dict(sparsity), "iterations": 1,
                          "retrain_epochs": self.s.retrain_epochs, "lr_factor": self.s.lr_factor}}

    def prune_move(self, st: _State, sparsity: dict[str, float],
                   bits: dict[str, int]) -> tuple[bool, Probe]:
        """Prune to ``sparsity`` and retrain, with recovery rounds while they gain; on
        success ``st`` moves there. A decision made before a kill is replayed, not redone."""
        stages = [*st.stages, self.prune_stage(sparsity)]
        key = "move:" + self.digest(stages)
        known = self.journal.probes.get(key)
        if isinstance(known, dict) and known.get("accepted") is False:
            return False, Probe(float(known["accuracy"]), int(known["bytes"]))
        rounds = int(known["rounds"]) if isinstance(known, dict) else None
        best, n = -1.0, 0
        while True:
            model, _ = self.run(stages)
            q = self.judge(_State(stages, sparsity, bits, model), sparsity, bits)
            if rounds is not None:
                if n >= rounds:
                    break
            elif q.accuracy >= self.floor or n >= self.s.recover_rounds or q.accuracy <= best:
                break
            best, n = q.accuracy, n + 1
            log(f"search: {q.accuracy:.4f} after retraining, below budget; recovery round {n}",
                self.quiet)
            stages = [*stages, self.prune_stage(sparsity)]
        ok = q.accuracy >= self.floor
        self.journal.probes[key] = {"accuracy": q.accuracy, "bytes": q.bytes, "accepted": ok,
                                    "rounds": n}
        self.journal.save()
        if ok:
            st.stages, st.sparsity, st.model = stages, sparsity, model
        return ok, q

    def report(self, record: dict[str, Any], p: Probe, ok: bool) -> None:
        record.update(bytes=p.bytes, accuracy=p.accuracy, accepted=ok)
        self.note(record)
        log(f"search: {record['move']}: {p.bytes:,} B, validation {p.accuracy:.4f} "
            f"{'accepted' if ok else 'rejected'}", self.quiet)

    def final_stages(self, st: _State) -> list[dict[str, Any]]:
        s = self.s
        tail: list[dict[str, Any]] = []
        if s.final_epochs and any(v > 0 for v in st.sparsity.values()):
            tail.append({"prune": {"method": "magnitude", "per_layer": dict(st.sparsity),
                                   "iterations": 1, "retrain_epochs": s.final_epochs,
                                   "lr_factor": s.lr_factor}})
        tail.append({"share": {"bits": dict(st.bits), "init": "linear",
                               "finetune_epochs": s.finetune_epochs, "optimizer": "adam",
                               "lr": 1e-3}})
        tail.append({"encode": {"coder": "huffman", "index_bits": "auto"}})
        return [*st.stages, *tail]

    def finish(self, st: _State) -> tuple[nn.Module, dict[str, Any]]:
        """Run the final stages; undo the last moves while the result misses the budget."""
        while True:
            model, rep = self.run(self.final_stages(st), final=True)
            acc = rep["final"]["accuracy"]
            ok = acc >= self.floor
            self.note({"move": "final", "bytes": rep["final"].get("file_bytes"),
                       "accuracy": acc, "accepted": ok, "bits": dict(st.bits),
                       "sparsity": dict(st.sparsity)})
            if ok:
                return model, rep
            if not st.moves:
                raise BudgetError(
                    f"no setting meets --max-drop {self.s.max_drop:g}: even the least "
                    f"compressed one tried scores {acc:.4f} on validation, below {self.floor:.4f}")
            self.undo(st)

    def undo(self, st: _State) -> None:
        last = st.moves.pop()
        log(f"search: final model over budget; undoing {last['kind']} "
            f"{last.get('layer', '')}".rstrip(), self.quiet)
        if last["kind"] == "bits":
            st.bits[last["layer"]] = last["from"]
        else:  # a prune move or the warm start: back to the stages before it
            st.stages, st.sparsity, st.model = last["stages"], last["sparsity"], last["model"]


def _zeros(t: Any) -> float:
    """Fraction of zero entries of a compressible tensor's effective value."""
    w = getattr(t.module, t.tensor)
    return float((w == 0).sum()) / max(w.numel(), 1)


def smallest(
    model: nn.Module | str,
    data: Dataset | str,
    max_drop: float,
    run_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    time_budget: float | None = None,
    settings: SearchSettings | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    config: TrainConfig | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The smallest ``.snn`` whose validation accuracy is within ``max_drop`` points of dense.

    Parameters
    ----------
    model : a trained module, a model file, or a registry name (trained first, on the
        training images minus the validation split).
    data : a :class:`~sparsenet.data.Dataset` or its name.
    max_drop : accuracy points the validation accuracy may lose (``0.3`` = 0.3 points).
    run_dir : the run directory (checkpoints, ``search.json``, ``recipe.toml``, report).
    out : the ``.snn`` (default ``run_dir/model.snn``).
    time_budget : seconds of searching before the final stages (``settings`` has the rest).
    resume, force : continue a killed search in ``run_dir``, or start over.

    Returns
    -------
    ``(model, report)`` as :func:`sparsenet.pipeline.compress`; ``report["search"]`` has the
    chosen per-layer settings, and ``report["final"]["test_accuracy"]`` the one test score.

    Raises
    ------
    BudgetError if no setting tried meets the budget (no file is left behind).
    """
    s = settings or SearchSettings(max_drop=max_drop, time_budget=time_budget)
    if settings is not None and (max_drop != settings.max_drop or time_budget is not None):
        s = SearchSettings(**{**settings.to_dict(), "max_drop": max_drop,
                              **({"time_budget": time_budget} if time_budget else {})})
    data_obj = load_dataset(data) if isinstance(data, str) else data
    held = s.holdout or validation_size(len(data_obj.y_train), data_obj.num_classes)
    rdir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="sparsenet-search-"))
    check_output(rdir, "dir", flag="--run-dir")
    snn = Path(out) if out is not None else rdir / "model.snn"
    src = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    check_output(snn, "snn", inputs=[src], flag="--out")
    journal = Journal(rdir, {**s.to_dict(), "holdout": held, "data": data_obj.name, "model": src})
    if force:
        journal.remove()
    elif journal.path.is_file() and not resume:
        raise RunError(f"{rdir}: already holds a search; pass --resume to continue it or "
                       "--force to start over")
    elif resume:
        journal.load()
    elif (rdir / MANIFEST).is_file():
        raise RunError(f"{rdir}: already holds a run; pass --resume to continue it or --force "
                       "to start over")
    existed = snn.exists()
    rdir.mkdir(parents=True, exist_ok=True)
    search = _Search(model if isinstance(model, (nn.Module, str)) else os.fspath(model),
                     data_obj, s, rdir, snn, quiet, config, journal, held)
    st = search.start(force)
    search.greedy(st)
    try:
        result, rep = search.finish(st)
    except BudgetError:
        if snn.is_file() and not existed:
            snn.unlink()  # written by this search and over budget: nothing half-good stays
        raise
    finally:
        if search.scratch.is_file():
            search.scratch.unlink()
    rep["search"] = {"max_drop": s.max_drop, "floor": search.floor, "holdout": held,
                     "sparsity": dict(st.sparsity), "bits": dict(st.bits),
                     "seconds": time.monotonic() - search.started,
                     "recipe": str(rdir / "recipe.toml")}
    journal.facts["result"] = rep["search"]
    journal.save()
    from ..report import write_report  # again, now that the journal holds the result

    rep.update({k: v for k, v in write_report(rdir).items() if k in ("figures", "search_section")})
    return result, rep

