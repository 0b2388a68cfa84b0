"""The compression report of a pipeline run: report.json, report.md and PNGs.

Everything is rebuilt from a run directory (its manifest and stage checkpoints), so
``sparsenet report run-dir/`` regenerates the report of a finished or interrupted run
without the data set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import load_model
from ..errors import CheckpointError
from ..io import atomic_write_text, write_json
from ..paths import check_input_dir, check_output
from ..pipeline.manifest import ManifestError, read_manifest, stage_checkpoint
from .search import plot_tradeoff, read_search, search_markdown
from .sizes import model_size

__all__ = ["build_report", "write_report", "format_markdown", "model_size"]


def _ckpt(run_dir: Path, entry: dict[str, Any] | None) -> Path:
    """The checkpoint of a manifest stage entry (``None``: the initial model)."""
    return stage_checkpoint(run_dir, None if entry is None else entry["index"],
                            "" if entry is None else entry["kind"])


def _coded_layers(size_report: Any) -> dict[str, dict[str, float]]:
    """Per-layer coded sizes from :func:`sparsenet.coding.save_snn`'s size report:
    ``{layer: {"bits", "weight_bits", "index_bits", "entries"}}`` (bits after coding)."""
    rows = size_report.get("layers") if isinstance(size_report, dict) else None
    out: dict[str, dict[str, float]] = {}
    for row in rows or []:
        if isinstance(row, dict) and "layer" in row and "total_bits_after" in row:
            out[str(row["layer"])] = {
                "bits": float(row["total_bits_after"]),
                "weight_bits": float(row.get("weight_bits_after", 0)),
                "index_bits": float(row.get("index_bits_after", 0)),
                "entries": float(row.get("entries") or row.get("weights") or 1),
            }
            w_ent, i_ent = row.get("weight_entropy_bits"), row.get("index_entropy_bits") or 0.0
            if isinstance(w_ent, (int, float)) and isinstance(i_ent, (int, float)):
                # the order-0 bound of the streams actually stored (their gap width)
                extra = float(row.get("codebook_bits", 0)) + float(row.get("bias_bits", 0))
                out[str(row["layer"])]["entropy_bits"] = float(w_ent) + float(i_ent) + extra
    return out


def _sensitivity_curves(raw: Any) -> dict[str, list[tuple[float, float]]]:
    """``{layer: [(sparsity, accuracy), ...]}`` from the prune stage's sensitivity record."""
    curves: dict[str, list[tuple[float, float]]] = {}
    if isinstance(raw, dict) and "sparsities" in raw and isinstance(raw.get("layers"), dict):
        grid = raw["sparsities"]
        for name, val in raw["layers"].items():
            curves[name] = list(zip(grid, val["accuracy"], strict=False))
        return curves
    if isinstance(raw, dict) and "layers" in raw:
        raw = raw["layers"]
    if isinstance(raw, dict):
        for name, val in raw.items():
            if isinstance(val, dict) and "sparsity" in val and "accuracy" in val:
                curves[name] = list(zip(val["sparsity"], val["accuracy"], strict=False))
            elif isinstance(val, dict):
                curves[name] = [(float(k), float(v)) for k, v in val.items()]
            elif isinstance(val, list):
                curves[name] = [(float(a), float(b)) for a, b in val]
    return curves


def build_report(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The report.json content of a run: stages, per-layer table, sensitivity, final numbers.

    Raises
    ------
    RunError / ManifestError (SparsenetErrors) for a missing or corrupt manifest.
    """
    rdir = Path(run_dir)
    man = read_manifest(rdir)  # validated: every field read below has its type
    try:
        return _build_report(rdir, man)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        # a record written by another program: report it, do not crash on it
        raise ManifestError(
            f"{rdir / 'manifest.json'}: corrupt manifest ({type(exc).__name__}: {exc})"
        ) from None


def _build_report(rdir: Path, man: dict[str, Any]) -> dict[str, Any]:
    init = man["initial"]["metrics"]
    # The dense reference is the trained model: after the train stage if it ran, else the input.
    trained = [e for e in man["stages"][:1] if e["kind"] == "train" and e["status"] == "done"]
    ref = trained[0]["metrics"] if trained else init
    base_acc, dense = ref["accuracy"], init["dense_bytes"]
    stages = [{"label": "initial", "kind": "initial", "accuracy": base_acc,
               "bytes": init["bytes"], "compression": dense / init["bytes"], "seconds": 0.0,
               "density": init["density"], "status": "done"}]
    sensitivity: dict[str, list[tuple[float, float]]] = {}
    coded: dict[str, dict[str, float]] = {}
    encode_entry = None
    for e in man["stages"]:
        row = {"label": f"{e['index']}:{e['kind']}", "kind": e["kind"], "status": e["status"],
               "seconds": e.get("seconds")}
        if e["status"] == "done":
            m = e["metrics"]
            row.update(accuracy=m["accuracy"], bytes=m["bytes"], compression=dense / m["bytes"],
                       density=m["density"], accuracy_drop=base_acc - m["accuracy"])
        stages.append(row)
        rec = e.get("record") or {}
        if "sensitivity" in rec:
            sensitivity = _sensitivity_curves(rec["sensitivity"])
        if e["kind"] == "encode" and e["status"] == "done":
            encode_entry = e
            coded = _coded_layers(rec.get("size_report"))
    done = [e for e in man["stages"] if e["status"] == "done"]
    last = done[-1]["metrics"] if done else init
    # Per-layer bits come from the last model that still carries its transforms (the
    # model loaded back from a .snn has plain weights); coded sizes from the encoder.
    carriers = [e for e in done if e["kind"] != "encode"]
    layers = []
    for lay in (carriers[-1]["metrics"] if carriers else init)["layers"]:
        dense_bits = lay["dense_bits"]
        layers.append({
            "name": lay["name"], "weights": lay["weights"], "density": lay["density"],
            "weight_bits": lay["weight_bits"], "index_bits": lay["index_bits"],
            "size_pq": lay["bits"] / dense_bits,
            "size_coded": coded[lay["name"]]["bits"] / dense_bits if lay["name"] in coded else None,
            "weight_bits_coded": _per_entry(coded.get(lay["name"]), "weight_bits"),
            "index_bits_coded": _per_entry(coded.get(lay["name"]), "index_bits")
            if lay["index_bits"] else None,
            # the coder's bound where it measured one (shared layers), else the estimate's
            "size_entropy": _entropy_bits(coded.get(lay["name"]), lay) / dense_bits,
        })
    final: dict[str, Any] = {"accuracy": last["accuracy"], "bytes": last["bytes"],
                             "compression": dense / last["bytes"],
                             "accuracy_drop": base_acc - last["accuracy"]}
    if encode_entry is not None:
        final["file"] = encode_entry["record"].get("out")
        final["file_bytes"] = encode_entry["record"].get("file_bytes")
        total = (encode_entry["record"].get("size_report") or {}).get("total") or {}
        if isinstance(total.get("total_bits_after"), (int, float)):
            # Han et al.'s accounting: the coded tensors alone, without the file's header,
            # against the dense starting model
            bits = total["total_bits_after"] + total.get("other_tensor_bits", 0)
            final["compression_tensors"] = 8 * dense / max(bits, 1)
    baseline: dict[str, Any] = {"accuracy": base_acc, "dense_bytes": dense}
    test = man.get("test")
    if isinstance(test, dict) and all(
            isinstance(test.get(k), (int, float)) and not isinstance(test.get(k), bool)
            for k in ("validation_images", "dense", "final")):
        # a holdout run: the accuracies above are on validation images; the test set once
        baseline["validation_images"] = int(test["validation_images"])
        baseline["test_accuracy"] = float(test["dense"])
        final["test_accuracy"] = float(test["final"])
        final["test_drop"] = float(test["dense"]) - float(test["final"])
    return {
        "run_dir": str(rdir),
        "recipe": man["recipe"].get("name"),
        "recipe_source": man.get("recipe_source"),
        "data": man.get("data"),
        "seed": man["recipe"].get("seed"),
        "model": man["initial"].get("source"),
        "baseline": baseline,
        "final": final,
        "stages": stages,
        "layers": layers,
        "sensitivity": {k: [list(p) for p in v] for k, v in sensitivity.items()},
        "complete": len(done) == len(man["recipe"]["stages"]),
        "seconds": sum(s.get("seconds") or 0.0 for s in stages),
    }


def _entropy_bits(coded: dict[str, float] | None, lay: dict[str, Any]) -> float:
    """Order-0 bound of a layer: the encoder's (when it measured one), else the estimate's.

    An encode stage without a share stage before it has no per-symbol entropy for float
    weights, so its coded row carries no ``entropy_bits``."""
    if coded is not None and isinstance(coded.get("entropy_bits"), (int, float)):
        return float(coded["entropy_bits"])
    est = lay.get("entropy_bits")
    return float(est) if isinstance(est, (int, float)) else float(lay["bits"])


def _per_entry(row: dict[str, float] | None, key: str) -> float | None:
    return None if row is None else row[key] / max(row["entries"], 1.0)


def _load(path: Path, model: nn.Module | None) -> nn.Module | None:
    import copy

    try:
        return load_model(path, model=copy.deepcopy(model) if model is not None else None)[0]
    except CheckpointError:
        return None


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 model: nn.Module | None = None) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and the PNGs into ``out`` (default ``run_dir/report``).

    ``model`` is a bare instance of the architecture, needed only for custom (unregistered)
    models, whose checkpoints cannot rebuild themselves.
    """
    from . import plots  # matplotlib: imported when a report is drawn, not with sparsenet

    rdir = check_input_dir(run_dir, "run directory")
    rep = build_report(rdir)  # a directory without a valid manifest fails here, creating nothing
    odir = Path(out) if out is not None else rdir / "report"
    check_output(odir, "dir", flag="report folder")
    odir.mkdir(parents=True, exist_ok=True)
    man = read_manifest(rdir)
    figures: dict[str, str] = {}
    done = [e for e in man["stages"] if e["status"] == "done"]
    share = [i for i, e in enumerate(done) if e["kind"] == "share"]
    if share:
        i = share[0]
        before = _load(_ckpt(rdir, done[i - 1] if i > 0 else None), model)
        after = _load(_ckpt(rdir, done[i]), model)
        if before is not None and after is not None:
            figures["sharing"] = plots.plot_sharing(before, after, odir / "weights_sharing.png").name
    if done:
        final = _load(_ckpt(rdir, done[-1]), model)
        if final is not None:
            figures["symbols"] = plots.plot_symbols(final, odir / "index_distributions.png").name
    if rep["sensitivity"]:
        curves = {k: [tuple(p) for p in v] for k, v in rep["sensitivity"].items()}
        figures["sensitivity"] = plots.plot_sensitivity(curves, odir / "sensitivity.png").name  # type: ignore[arg-type]
    pts = [s for s in rep["stages"] if s.get("accuracy") is not None]
    figures["accuracy_size"] = plots.plot_accuracy_size(pts, odir / "accuracy_size.png").name
    searched = read_search(rdir)
    if searched is not None:  # a budget search (sparsenet compress --max-drop)
        figures["tradeoff"] = plot_tradeoff(searched, odir / "tradeoff.png").name
        rep["search_section"] = search_markdown(searched, rep["layers"], figures["tradeoff"])
    rep["figures"] = figures
    write_json(odir / "report.json", rep)
    atomic_write_text(odir / "report.md", format_markdown(rep))
    return rep


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _bits(fixed: int, coded: float | None) -> str:
    return f"{fixed}" if coded is None else f"{fixed} → {coded:.1f}"


def format_markdown(rep: dict[str, Any]) -> str:
    """report.md: summary, per-stage table, per-layer table (Deep Compression Tables 2–3), plots."""
    f, b = rep["final"], rep["baseline"]
    lines = [
        f"# Compression report: {rep['recipe']} on {rep['model']} ({rep['data']})",
        "",
        f"- Accuracy: {_pct(b['accuracy'], 2)} dense → {_pct(f['accuracy'], 2)} "
        f"(drop {100 * f['accuracy_drop']:+.2f} points)",
        f"- Size: {b['dense_bytes'] / 1024:,.1f} KB dense → {f['bytes'] / 1024:,.1f} KB, "
        f"**{f['compression']:.1f}×** smaller",
    ]
    if "test_accuracy" in f:
        lines[-2] = lines[-2].replace("- Accuracy:", f"- Validation accuracy ({b['validation_images']:,} "
                                      "training images held out; every stage below):")
        lines.insert(-1, f"- Test accuracy, scored once at the end: {_pct(b['test_accuracy'], 2)} "
                     f"dense → {_pct(f['test_accuracy'], 2)} (drop {100 * f['test_drop']:+.2f} points)")
    if f.get("file"):
        lines.append(f"- File: `{f['file']}` ({f['file_bytes']:,} bytes)")
    if f.get("compression_tensors"):
        lines.append(f"- Coded tensors alone (Deep Compression's accounting, no file header): "
                     f"**{f['compression_tensors']:.1f}×**")
    lines += [f"- Seed {rep['seed']}, total stage time {rep['seconds']:.1f} s"
              + ("" if rep["complete"] else " (**run incomplete**)"), "",
              "## Accuracy and compression after every stage", "",
              "| stage | status | accuracy | density | size (KB) | compression | time (s) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for s in rep["stages"]:
        if s.get("accuracy") is None:
            lines.append(f"| {s['label']} | {s['status']} | | | | | |")
            continue
        lines.append(
            f"| {s['label']} | {s['status']} | {_pct(s['accuracy'], 2)} | {_pct(s['density'])} | "
            f"{s['bytes'] / 1024:,.1f} | {s['compression']:.1f}× | {s.get('seconds') or 0:.1f} |")
    lines += ["", "## Per layer (as in Deep Compression, Tables 2–3)", "",
              "Sizes are % of the dense float32 layer (weights and biases). P+Q: pruning and "
              "sharing at fixed width; coded: the .snn sections; entropy: the order-0 bound of "
              "the stored streams.", "",
              "| layer | #W | W% | weight bits (P+Q → coded) | gap bits (P+Q → coded) "
              "| size P+Q | size coded | entropy bound |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for lay in rep["layers"]:
        lines.append(
            f"| {lay['name']} | {lay['weights']:,} | {_pct(lay['density'])} | "
            f"{_bits(lay['weight_bits'], lay.get('weight_bits_coded'))} | "
            f"{_bits(lay['index_bits'], lay.get('index_bits_coded')) if lay['index_bits'] else '–'} | "
            f"{_pct(lay['size_pq'], 2)} | {_pct(lay['size_coded'], 2)} | "
            f"{_pct(lay['size_entropy'], 2)} |")
    titles = {"sharing": "Weight distribution before and after sharing",
              "symbols": "Distribution of sparse-index gaps and shared-weight indices",
              "sensitivity": "Per-layer sensitivity", "accuracy_size": "Accuracy against size"}
    for key, name in rep.get("figures", {}).items():
        if key != "tradeoff":  # drawn inside the search section
            lines += ["", f"## {titles.get(key, key)}", "", f"![{key}]({name})"]
    lines += rep.get("search_section", [])
    return "\n".join(lines) + "\n"
