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
2. **Pruning ladder** (``allocation="ladder"``, the default). Global magnitude sparsities
   rung by rung (:data:`~.search_settings.LADDER`), each a prune stage with retraining and
   recovery rounds while they gain; the rung kept is the highest whose validation
   accuracy, smoothed by a non-increasing isotonic fit over all rungs, keeps the pruning
   budget (``1 - bits_reserve`` of it). ``allocation="greedy"``, the first design: a global
   warm start, then per-layer prune moves priced like bit moves.
3. **Bits, by greedy marginal allocation.** A move takes one bit off one layer's codebook.
   Every move is *probed* without retraining (:mod:`sparsenet.pipeline.probe`): the model
   shared at the new widths and written by the real encoder, so a move's price is the file
   bytes it saves per validation point it costs. Moves are tried from the best price down;
   one is kept if its probe meets the budget; a rejected move closes that layer's bits.
4. **Final point.** A last retraining of ``final_epochs`` at the chosen sparsities, k-means
   sharing at the chosen bits with ``finetune_epochs`` of centroid fine-tuning, and Huffman
   coding with per-layer gap widths (``gap_bits = "auto"``). If that final model misses
   the budget on the validation split, the last accepted moves are undone one by one.

Every retraining (and the centroid fine-tuning) is distilled from the dense model
(``SearchSettings.distill``, :class:`~sparsenet.training.distill.Distill`): the budget is
measured against that model, and labels alone let a retrained model drift from it.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..data import Dataset, holdout, load_dataset, validation_size
from ..errors import SparsenetError
from ..layers import compressible_tensors
from ..paths import check_output
from ..progress import log
from ..training import TrainConfig, predict
from .probe import Journal, Probe, probe, score, state_key
from .runner import MANIFEST, RunError
from .runner import compress as run_recipe
from .search_settings import MAX_SPARSITY, SearchSettings

__all__ = ["SearchSettings", "smallest", "BudgetError"]

class BudgetError(SparsenetError):
    """No setting the search tried meets the accuracy budget."""


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
        self.val = holdout(data, held).test
        self.dense_labels: Any = None  # the dense model's labels of the validation images
        self.scratch = rdir / "search-probe.snn"
        self.started = time.monotonic()
        self.floor = self.prune_floor = self.dense_val = 0.0

    # -- running stages ------------------------------------------------------------------
    def recipe(self, stages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": "smallest", "seed": self.s.seed, "holdout": self.held,
                "description": f"smallest .snn within {self.s.max_drop:g} validation points "
                               "(sparsenet compress --max-drop)",
                "stages": stages}

    def digest(self, stages: list[dict[str, Any]]) -> str:
        return hashlib.sha256(json.dumps(stages, sort_keys=True).encode()).hexdigest()[:16]

    def run(self, stages: list[dict[str, Any]], final: bool = False, score: bool = False,
            force: bool = False) -> tuple[nn.Module, dict[str, Any]]:
        """Run ``stages`` through the runner (finished prefixes are reused). ``final``: the
        encode stage writes the output; ``score``: the one look at the test set, and the report."""
        model, rep = run_recipe(
            self.source, self.data, self.recipe(stages), run_dir=self.dir,
            out=self.out if final else None, resume=not force, force=force,
            quiet=self.quiet or not final, report=score, config=self.config, score_test=score)
        return model, rep

    # -- probes ----------------------------------------------------------------------------
    def probe(self, st: _State, sparsity: dict[str, float], bits: dict[str, int]) -> Probe:
        """The probe of ``st.model`` at these targets (answered by the journal when it can)."""
        key = state_key(sparsity, bits, self.digest(st.stages))
        got = self.journal.cached(key)
        if got is None:
            got = probe(st.model, sparsity, bits, self.val, self.dense_labels, self.scratch,
                        {"dataset": self.data.name, "recipe": "smallest"}, seed=self.s.seed)
            self.journal.remember(key, got)
        return got

    def float_probe(self, st: _State, sparsity: dict[str, float], bits: dict[str, int]) -> Probe:
        """The retrained float model's validation accuracy, with the file bytes at ``bits``."""
        key = "float:" + self.digest(st.stages)
        got = self.journal.cached(key)
        if got is None:
            acc, differ = score(st.model, self.val, self.dense_labels)
            got = Probe(acc, self.probe(st, sparsity, bits).bytes, differ)
            self.journal.remember(key, got)
        return got

    def meets(self, p: Probe, floor: float) -> bool:
        """Whether ``p``'s accuracy keeps ``floor`` with the settings' confidence: less the
        margin ``z·√differ / n`` (none at ``confidence = 0.5``)."""
        margin = self.s.z * math.sqrt(p.differ) / len(self.val[1]) if self.s.z else 0.0
        return p.accuracy - margin >= floor

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
        names = {t.name: t.kind for t in compressible_tensors(model)}
        if not names:
            raise SparsenetError("nothing to compress: the model has no compressible weights")
        bits = {n: self.s.start_bits.get(k, 8) for n, k in names.items()}
        st = _State(stages, dict.fromkeys(names, 0.0), bits, model)
        self.dense_labels = predict(model, self.val[0])
        dense, _ = score(model, self.val, self.dense_labels)
        self.dense_val = dense
        self.floor = _floor(dense, self.s.max_drop, self.held)
        # pruning may spend the budget but a reserve, kept for the bits phase
        self.prune_floor = _floor(dense, (1 - self.s.bits_reserve) * self.s.max_drop, self.held)
        self.journal.facts.update(dense_validation=dense, floor=self.floor, layers=list(names))
        p = self.probe(st, st.sparsity, bits)
        log(f"search: dense validation accuracy {dense:.4f} on {self.held:,} held-out images; "
            f"budget >= {self.floor:.4f}; shared at {bits}: {p.bytes:,} B, {p.accuracy:.4f}",
            self.quiet)
        self.note({"move": "start", "bytes": p.bytes, "accuracy": p.accuracy, "accepted": True})
        if self.s.allocation == "greedy" and self.s.warmup_sparsity > 0:
            self.warm_start(st)
        return st

    def warm_start(self, st: _State) -> None:
        s = self.s
        stage = self.global_stage(s.warmup_sparsity, s.warmup_iterations)
        before = (st.stages, st.sparsity, st.model)
        ok, p = self.prune_move(st, None, st.bits, first=stage)
        self.note({"move": f"warm start {s.warmup_sparsity:g}", "bytes": p.bytes,
                   "accuracy": p.accuracy, "accepted": ok})
        log(f"search: warm start to {s.warmup_sparsity:g} global sparsity: {p.bytes:,} B, "
            f"{p.accuracy:.4f} ({'kept' if ok else 'over budget, dropped'})", self.quiet)
        if ok:
            st.moves.append({"kind": "warm", "stages": before[0], "sparsity": before[1],
                             "model": before[2]})

    def ladder(self, st: _State) -> None:
        """Global magnitude pruning rung by rung (each rung a prune stage with retraining,
        continuing from the last), then back to the highest rung whose validation accuracy,
        smoothed by a non-increasing isotonic fit over all rungs, keeps the pruning budget.

        One rung's accuracy is within about ±0.2 points of its trend on 5,000 images, the
        size of the budget itself; the fit pools neighbouring rungs so one lucky or unlucky
        rung does not decide. The climb stops after two rungs in a row clearly below the
        pruning budget (:meth:`clearly_below`).
        """
        path = [(st.stages, st.sparsity, st.model)]
        probes = [Probe(self.dense_val, 0, 0)]
        below: list[bool] = []
        for k, target in enumerate(self.s.ladder):
            if self.over_time():
                log(f"search: time budget of {self.s.time_budget:g} s spent", self.quiet)
                break
            stage = self.global_stage(target, self.s.warmup_iterations if k == 0 else 1)
            stages, sparsity, model, q, _ = self.retrain([*path[-1][0], stage], None, st.bits)
            path.append((stages, sparsity, model))
            probes.append(q)
            self.note({"move": f"rung {target:g}", "bytes": q.bytes, "accuracy": q.accuracy,
                       "differ": q.differ, "accepted": self.meets(q, self.prune_floor)})
            log(f"search: rung {target:g}: {q.bytes:,} B at start bits, validation "
                f"{q.accuracy:.4f}", self.quiet)
            below.append(self.clearly_below(q))
            if below[-2:] == [True, True]:
                break  # two rungs in a row clearly below: the trend is down
        accs = [q.accuracy for q in probes]
        fitted = _non_increasing(accs)
        best = max([0] + [i for i, (f, q) in enumerate(zip(fitted, probes, strict=True))
                          if self.meets(replace(q, accuracy=f), self.prune_floor)])
        self.journal.facts["ladder"] = {"accuracy": accs, "fitted": fitted, "chosen": best,
                                        "differ": [q.differ for q in probes]}
        for i in range(1, best + 1):  # each rung can be undone back to the one below
            st.moves.append({"kind": "rung", "stages": path[i - 1][0], "sparsity": path[i - 1][1],
                             "model": path[i - 1][2]})
        st.stages, st.sparsity, st.model = path[best]
        log(f"search: chose rung {best} of {len(accs) - 1} (fitted validation "
            f"{fitted[best]:.4f}, budget for pruning {self.prune_floor:.4f})", self.quiet)

    def clearly_below(self, q: Probe) -> bool:
        """Whether a rung's validation accuracy lies below the pruning budget by more than
        half the budget *and* two standard errors of its drop from dense.

        The drop is a paired difference: its standard error is about √d / n for ``d`` of the
        ``n`` validation images on which the rung's labels differ from the dense model's. On
        Fashion-MNIST (n = 5,000, d ≈ 100) that is ≈ 0.2 points; on MNIST-5k (n = 333) one
        image is 0.3 points, and half a budget alone stopped the climb on one unlucky image.
        """
        if q.accuracy >= self.prune_floor - self.s.max_drop / 200:
            return False  # within half a budget
        return q.accuracy < self.prune_floor - 2 * math.sqrt(max(q.differ, 1)) / len(self.val[1])

    def moves(self, st: _State, kind: str, step: dict[str, float],
              closed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n in st.sparsity:
            if kind == "prune" and step[n] >= self.s.min_step and st.sparsity[n] < MAX_SPARSITY:
                target = min(MAX_SPARSITY, 1 - (1 - st.sparsity[n]) * (1 - step[n]))
                out.append({"kind": "prune", "layer": n, "to": round(target, 6)})
            if kind == "bits" and st.bits[n] > self.s.min_bits and n not in closed:
                out.append({"kind": "bits", "layer": n, "to": st.bits[n] - 1})
        return out

    def targets(self, st: _State, mv: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
        sparsity, bits = dict(st.sparsity), dict(st.bits)
        (sparsity if mv["kind"] == "prune" else bits)[mv["layer"]] = mv["to"]
        return sparsity, bits

    def greedy(self, st: _State, kind: str) -> None:
        """Moves of ``kind`` (``"prune"`` or ``"bits"``), best price first, until none is left
        or the time budget is spent (a bits round probes every layer: on a 17-layer ResNet
        that is minutes, and rounds go on while any layer can lose a bit)."""
        step = dict.fromkeys(st.sparsity, self.s.prune_step)
        closed: set[str] = set()
        n_val = len(self.val[1])
        while not self.over_time():
            cur = self.probe(st, st.sparsity, st.bits)
            priced = []
            for mv in self.moves(st, kind, step, closed):
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
            ok = self.meets(p, self.floor)
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

    def retrain(self, stages: list[dict[str, Any]], sparsity: dict[str, float] | None,
                bits: dict[str, int], rounds: int | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, float], nn.Module, Probe, int]:
        """Run ``stages`` (the last one prunes), then recovery rounds of retraining at the same
        targets while the float model is below the pruning budget and each round gains (a
        round that does not gain is not kept); ``rounds``: exactly that many, replaying a
        decision made before a kill. ``sparsity=None``: measured after the run (a global
        target gives each layer its own share). Returns the stages, the per-layer
        sparsities, the model, its float probe and the number of rounds kept."""
        model, _ = self.run(stages)
        if sparsity is None:
            sparsity = {t.name: _zeros(t) for t in compressible_tensors(model)}
        q = self.float_probe(_State(stages, sparsity, bits, model), sparsity, bits)
        n = 0
        while n < (self.s.recover_rounds if rounds is None else rounds):
            # on the drop as measured, whatever the confidence: the margin is for decisions,
            # and rounds on every rung would multiply the search's training (on LeNet-5 by ~4)
            if rounds is None and q.accuracy >= self.prune_floor:
                break
            more = [*stages, self.prune_stage(sparsity)]
            m2, _ = self.run(more)
            q2 = self.float_probe(_State(more, sparsity, bits, m2), sparsity, bits)
            log(f"search: recovery round, validation {q.accuracy:.4f} -> {q2.accuracy:.4f}",
                self.quiet)
            if rounds is None and q2.accuracy <= q.accuracy:
                break
            stages, model, q, n = more, m2, q2, n + 1
        return stages, sparsity, model, q, n

    def distill(self) -> dict[str, float]:
        """The distillation keys of a retraining stage (none when ``distill`` is 0)."""
        if not self.s.distill:
            return {}
        return {"distill": self.s.distill, "distill_temperature": self.s.distill_temperature}

    def global_stage(self, sparsity: float, iterations: int) -> dict[str, Any]:
        return {"prune": {"method": "magnitude", "sparsity": sparsity,
                          "iterations": max(iterations, 1), "retrain_epochs": self.s.retrain_epochs,
                          "lr_factor": self.s.lr_factor, **self.distill()}}

    def prune_stage(self, sparsity: dict[str, float], epochs: int | None = None) -> dict[str, Any]:
        return {"prune": {"method": "magnitude", "per_layer": dict(sparsity), "iterations": 1,
                          "retrain_epochs": self.s.retrain_epochs if epochs is None else epochs,
                          "lr_factor": self.s.lr_factor, **self.distill()}}

    def prune_move(self, st: _State, sparsity: dict[str, float] | None, bits: dict[str, int],
                   first: dict[str, Any] | None = None) -> tuple[bool, Probe]:
        """Prune to ``sparsity`` (or by the stage ``first``, then measured) and retrain, with
        recovery rounds while they gain; on success ``st`` moves there. A decision made
        before a kill is replayed, not redone."""
        stages = [*st.stages, first or self.prune_stage(sparsity or {})]
        key = "move:" + self.digest(stages)
        known = self.journal.probes.get(key)
        if isinstance(known, dict) and known.get("accepted") is False:
            return False, Probe(float(known["accuracy"]), int(known["bytes"]),
                                int(known.get("differ", 0)))
        rounds = int(known["rounds"]) if isinstance(known, dict) else None
        stages, sparsity, model, q, n = self.retrain(stages, sparsity, bits, rounds)
        ok = self.meets(q, self.prune_floor)
        self.journal.probes[key] = {"accuracy": q.accuracy, "bytes": q.bytes, "differ": q.differ,
                                    "accepted": ok, "rounds": n}
        self.journal.save()
        if ok:
            st.stages, st.sparsity, st.model = stages, sparsity, model
        return ok, q

    def report(self, record: dict[str, Any], p: Probe, ok: bool) -> None:
        record.update(bytes=p.bytes, accuracy=p.accuracy, differ=p.differ, accepted=ok)
        self.note(record)
        log(f"search: {record['move']}: {p.bytes:,} B, validation {p.accuracy:.4f} "
            f"{'accepted' if ok else 'rejected'}", self.quiet)

    def final_stages(self, st: _State, finetune: int) -> list[dict[str, Any]]:
        s = self.s
        tail: list[dict[str, Any]] = []
        if s.final_epochs and any(v > 0 for v in st.sparsity.values()):
            tail.append(self.prune_stage(st.sparsity, s.final_epochs))
        tail.append({"share": {"weight_bits": dict(st.bits), "init": "linear",
                               "finetune_epochs": finetune, "optimizer": "adam",
                               "lr": 1e-3, **(self.distill() if finetune else {})}})
        tail.append({"encode": {"coder": "huffman", "gap_bits": "auto"}})
        return [*st.stages, *tail]

    def finish(self, st: _State) -> tuple[nn.Module, dict[str, Any]]:
        """Run the final stages with and without centroid fine-tuning and keep the one better
        on validation (fine-tuning can overfit the training images: on LeNet-300 it cost
        0.2 points of validation accuracy at every bit width); undo the last moves while the
        better one misses the budget. The test set is scored once, on the chosen file."""
        while True:
            tried = []
            for ft in dict.fromkeys((0, self.s.finetune_epochs)):
                model, rep = self.run(self.final_stages(st, ft), final=True)
                acc = rep["final"]["accuracy"]
                differ = score(model, self.val, self.dense_labels)[1]
                p = Probe(acc, rep["final"]["file_bytes"], differ)
                tried.append((acc, ft, p))
                self.note({"move": f"final (fine-tuning {ft} epochs)", "bytes": p.bytes,
                           "accuracy": acc, "differ": p.differ,
                           "accepted": self.meets(p, self.floor), "bits": dict(st.bits),
                           "sparsity": dict(st.sparsity)})
            acc, ft, p = max(tried, key=lambda t: t[:2])  # a tie keeps the fine-tuned one
            size = p.bytes
            if self.meets(p, self.floor):
                # the result goes into the journal first, so the one report written holds it
                self.journal.facts["result"] = {
                    "max_drop": self.s.max_drop, "floor": self.floor, "holdout": self.held,
                    "file_bytes": size, "validation": acc, "sparsity": dict(st.sparsity),
                    "bits": dict(st.bits), "seconds": time.monotonic() - self.started,
                    "recipe": str(self.dir / "recipe.toml")}
                self.journal.save()
                return self.run(self.final_stages(st, ft), final=True, score=True)
            if not st.moves:
                sure = f" with confidence {self.s.confidence:g}" if self.s.z else ""
                raise BudgetError(
                    f"no setting meets --max-drop {self.s.max_drop:g}{sure}: even the least "
                    f"compressed one tried scores {acc:.4f} on validation, against a budget "
                    f"of {self.floor:.4f}")
            self.undo(st)

    def undo(self, st: _State) -> None:
        last = st.moves.pop()
        log(f"search: final model over budget; undoing {last['kind']} "
            f"{last.get('layer', '')}".rstrip(), self.quiet)
        if last["kind"] == "bits":
            st.bits[last["layer"]] = last["from"]
        else:  # a prune move or the warm start: back to the stages before it
            st.stages, st.sparsity, st.model = last["stages"], last["sparsity"], last["model"]


def _floor(dense: float, points: float, n: int) -> float:
    """The lowest validation accuracy within ``points`` of ``dense`` on ``n`` images: the
    budget counted in whole images, rounded to the nearest (on MNIST-5k's 333 validation
    images 0.3 points is 0.999 of an image: one image may be lost, not none), less a hair
    for float rounding."""
    return dense - round(points * n / 100) / n - 1e-9


def _non_increasing(values: list[float]) -> list[float]:
    """The least-squares non-increasing fit of ``values`` (pool adjacent violators)."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(increasing=False).fit_transform(range(len(values)), values)
    return [float(v) for v in fit]


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
    # the time budget only says when to stop: a killed search may resume with another one
    # (nor does a confidence left at 0.5 go in: journals from before it existed still resume)
    same = {k: v for k, v in s.to_dict().items()
            if k != "time_budget" and not (k == "confidence" and v == 0.5)}
    journal = Journal(rdir, {**same, "holdout": held, "data": data_obj.name, "model": src})
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
    if s.allocation == "ladder":
        search.ladder(st)
    else:
        search.greedy(st, "prune")
    search.greedy(st, "bits")
    try:
        result, rep = search.finish(st)
    except BudgetError:
        if snn.is_file() and not existed:
            snn.unlink()  # written by this search and over budget: nothing half-good stays
        raise
    finally:
        if search.scratch.is_file():
            search.scratch.unlink()
    rep["search"] = dict(journal.facts["result"])
    return result, rep

