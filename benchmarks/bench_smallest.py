"""The smallest file within an accuracy budget (``sparsenet compress --max-drop``).

One row per (model, data, threads, variant): the search run from the registry name (the
dense model is trained inside the run, on the training images minus the validation split,
so the validation images are unseen by every model), the whole ``.snn`` against the dense
float32 weights, the validation drop the search controlled and the test drop it did not
see, and the search's wall time. Variants switch one ingredient off (the ablation)::

    python benchmarks/bench_smallest.py --model lenet300 --data fashion-mnist --threads 1
    python benchmarks/bench_smallest.py --model lenet300 --variant no-bits --variant greedy

Run directories go to ``$SPARSENET_ARTIFACTS/smallest/`` (resumable with ``--resume``); the
report, the chosen recipe and a JSON row per run go to ``benchmarks/results/smallest/``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import artifacts_dir, git_commit, machine  # noqa: E402

from sparsenet.io import write_json  # noqa: E402
from sparsenet.pipeline import SearchSettings, compress  # noqa: E402

# What each variant changes in the default settings (the ablation's rows).
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-bits": {"min_bits": 6},            # no bits phase: every layer stays at its start width
    "no-recover": {"recover_rounds": 0},   # one retraining per rung, no recovery rounds
    "no-final": {"final_epochs": 0},       # no final retraining at the chosen point
    "greedy": {"allocation": "greedy"},    # per-layer prune moves instead of the ladder
    "no-distill": {"distill": 0.0},        # retraining on the labels alone
}
OUT = Path(__file__).resolve().parent / "results" / "smallest"


def run_one(model: str, data: str, threads: int, variant: str, max_drop: float,
            resume: bool, time_budget: float | None, confidence: float = 0.5,
            reuse: Path | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    name = f"{model}-{data}-t{threads}" + ("" if variant == "full" else f"-{variant}") + \
        ("" if confidence == 0.5 else f"-c{confidence:g}")
    rdir = artifacts_dir() / "smallest" / name
    settings = SearchSettings(max_drop=max_drop, time_budget=time_budget, confidence=confidence,
                              **VARIANTS[variant])
    commit = git_commit()  # the code that runs: read now, not when the search ends
    if reuse is not None:
        if rdir.exists() and not resume:
            sys.exit(f"{rdir} exists: pass --resume to continue it, or remove it to --reuse")
        # an earlier run's finished stages (same model, data and threads): the runner reuses
        # a stage only when its whole recipe prefix matches, as on --resume
        shutil.copytree(reuse / "stages", rdir / "stages", dirs_exist_ok=resume)
        shutil.copy2(reuse / "manifest.json", rdir / "manifest.json")
        resume = True
    t0 = time.perf_counter()
    _model, rep = compress(model, data, "smallest", run_dir=rdir, max_drop=max_drop,
                           settings=settings, resume=resume, force=not resume)
    wall = time.perf_counter() - t0
    f, b, s = rep["final"], rep["baseline"], rep["search"]
    row = {
        "model": model, "data": data, "threads": threads, "variant": variant,
        "max_drop_points": max_drop, "confidence": confidence,
        "reused_stages_of": None if reuse is None else str(reuse), "file_bytes": f["file_bytes"],
        "dense_bytes": b["dense_bytes"], "ratio": b["dense_bytes"] / f["file_bytes"],
        "validation_dense": b["accuracy"], "validation_final": f["accuracy"],
        "validation_drop_points": 100 * (b["accuracy"] - f["accuracy"]),
        "test_dense": b["test_accuracy"], "test_final": f["test_accuracy"],
        "test_drop_points": 100 * f["test_drop"], "search_seconds": s["seconds"],
        "wall_seconds": wall, "sparsity": s["sparsity"], "bits": s["bits"],
        "commit": commit, "machine": machine(),
    }
    dest = OUT / name
    dest.mkdir(parents=True, exist_ok=True)
    for f_ in ("recipe.toml", "search.json"):
        shutil.copy2(rdir / f_, dest / f_)
    for f_ in (rdir / "report").iterdir():
        if f_.suffix in (".md", ".json", ".png"):
            shutil.copy2(f_, dest / f_.name)
    write_json(dest / "row.json", row)
    print(f"{name}: {row['ratio']:.1f}x ({row['file_bytes']:,} B), validation drop "
          f"{row['validation_drop_points']:+.2f}, test drop {row['test_drop_points']:+.2f} "
          f"points, search {row['search_seconds']:.0f} s")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet300")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-drop", type=float, default=0.3)
    ap.add_argument("--time-budget", type=float, default=None, help="seconds")
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    ap.add_argument("--confidence", type=float, default=0.5,
                    help="SearchSettings.confidence (0.5: the drop as measured)")
    ap.add_argument("--reuse", type=Path, default=None, metavar="RUN_DIR",
                    help="start from the finished stages of an earlier run of the same model, "
                    "data and threads (reused where the recipe prefix matches; a new run dir)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    for v in args.variant or ["full"]:
        run_one(args.model, args.data, args.threads, v, args.max_drop, args.resume,
                args.time_budget, args.confidence, args.reuse)


if __name__ == "__main__":
    main()
