"""What each ingredient adds to the Deep Compression pipeline: one setting changed at a time.

The built-in ``deep-compression`` recipe for the model runs once from the dense baseline.
Every variant then resumes a *copy* of that run directory with one setting changed, so the
stages before the change are reused bit for bit and only the changed stage and the ones
after it re-run (same seed):

* ``ans``: the ANS coder instead of Huffman (encode only);
* ``fixed-gaps``: Han's fixed gap widths (8 bits conv, 5 fc) instead of ``gap_bits="auto"``;
* ``optimal``: optimal 1-D k-means (``ckwrap``) instead of linear initialisation (share + encode);
* ``obd``: Optimal Brain Damage instead of magnitude pruning (prune + share + encode);
* ``lowrank``: a truncated-SVD stage (energy 0.95, 4 fine-tuning epochs) before pruning.

Usage::

    python benchmarks/bench_ablation.py --model lenet300 --threads 1
    python benchmarks/bench_ablation.py --model lenet5 --variants ans,fixed-gaps,optimal

Writes ``benchmarks/results/pipeline/ablation-<model>-<data>.json`` (rows of variants not run
this time are kept from an earlier file) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import baseline_path, git_commit, machine  # noqa: E402

from sparsenet.io import atomic_write_text  # noqa: E402
from sparsenet.pipeline import compress, load_recipe  # noqa: E402

Edit = Callable[[list[dict[str, Any]]], None]


def _setting(kind: str, key: str, value: Any) -> Edit:
    def edit(stages: list[dict[str, Any]]) -> None:
        next(s[kind] for s in stages if kind in s)[key] = value

    return edit


def _lowrank_first(stages: list[dict[str, Any]]) -> None:
    at = next(i for i, s in enumerate(stages) if "prune" in s)
    stages.insert(at, {"factorize": {"energy": 0.95, "finetune_epochs": 4}})


VARIANTS: dict[str, tuple[str, Edit]] = {
    "ans": ("ANS instead of Huffman", _setting("encode", "coder", "ans")),
    "fixed-gaps": (
        "fixed gap widths (conv 8, fc 5 bits) instead of auto",
        _setting("encode", "gap_bits", {"conv": 8, "fc": 5}),
    ),
    "optimal": ("optimal 1-D k-means instead of linear init", _setting("share", "init", "optimal")),
    "obd": ("OBD instead of magnitude pruning", _setting("prune", "method", "obd")),
    "lowrank": ("truncated SVD (energy 0.95) before pruning", _lowrank_first),
}


def _row(name: str, label: str, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    final = report["final"]
    return {
        "variant": name,
        "label": label,
        "accuracy": final["accuracy"],
        "accuracy_drop": final["accuracy_drop"],
        "file_bytes": final["file_bytes"],
        "compression_file": final["compression"],
        "compression_tensors": final["compression_tensors"],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet300", choices=("lenet300", "lenet5"))
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--work", help="run directories go here (default: a temporary directory)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline"))
    ap.add_argument("--reuse", action="store_true",
                    help="resume the variants' run directories already in --work (after a crash)")
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; expected some of {sorted(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="sparsenet-ablation-"))
    checkpoint = baseline_path(args.model, args.data)
    base = load_recipe("deep-compression", model=args.model).to_dict()

    def run(name: str, recipe: dict[str, Any], resume_from: Path | None) -> tuple[dict, float]:
        rdir = work / name
        if resume_from is not None and not (args.reuse and (rdir / "manifest.json").is_file()):
            shutil.rmtree(rdir, ignore_errors=True)
            shutil.copytree(resume_from, rdir)
        t0 = time.perf_counter()
        _, report = compress(checkpoint, args.data, recipe, run_dir=rdir, out=work / f"{name}.snn",
                             resume=True, quiet=True)
        return report, time.perf_counter() - t0

    rows = []
    report, secs = run("builtin", base, None)
    rows.append(_row("builtin", f"built-in recipe {base['name']}", report, secs))
    print(f"builtin: {rows[-1]['accuracy']:.2%}, {rows[-1]['compression_file']:.1f}x ({secs:.0f} s)")
    for name in names:
        label, edit = VARIANTS[name]
        recipe = copy.deepcopy(base)
        recipe["name"] = f"{base['name']}-{name}"
        edit(recipe["stages"])
        report, secs = run(name, recipe, work / "builtin")
        rows.append(_row(name, label, report, secs))
        print(f"{name}: {rows[-1]['accuracy']:.2%}, {rows[-1]['compression_file']:.1f}x ({secs:.0f} s)")

    out = Path(args.out) / f"ablation-{args.model}-{args.data}.json"
    if out.is_file():  # keep the rows of variants not re-run this time (same model and data)
        done = {r["variant"] for r in rows}
        old = json.loads(out.read_text())
        rows += [r for r in old.get("rows", []) if r["variant"] not in done]
        rows.sort(key=lambda r: ["builtin", *VARIANTS].index(r["variant"]))
    result = {
        "benchmark": f"pipeline ablation, {args.model} on {args.data}",
        "command": "python benchmarks/bench_ablation.py " + " ".join(argv or sys.argv[1:]),
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "baseline": str(checkpoint),
        "dense_accuracy": report["baseline"]["accuracy"],
        "rows": rows,
        "commit": git_commit(),
        "machine": machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1))
    print("\n| variant | accuracy | drop | file (B) | ratio (file) | ratio (tensors) | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['accuracy']:.2%} | {100 * r['accuracy_drop']:.2f} | "
              f"{r['file_bytes']:,} | {r['compression_file']:.1f}× | "
              f"{r['compression_tensors']:.1f}× | {r['seconds']:.0f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
