"""Accuracy of Deep Sparse Coding features with a linear classifier, ingredient by ingredient.

For each data set (Fashion-MNIST, MNIST-5k) one table:

    raw pixels + linear                 the peer: standardised pixels, same classifier
    1-layer SC + pyramid (ScSPM-like)   layer-1 sparse codes, 1×1/2×2/4×4 max pooling
    2-layer DeepSC, no DrLIM            + local 4×4 pooling, a second sparse-coding layer
    2-layer DeepSC + DrLIM              + DrLIM reduction of the pooled codes between layers

The 1-layer row is the first block of the 2-layer (no DrLIM) features: the same seed gives
the same first-layer dictionary and codes, so its extraction time is that run's layer-1
time. Dictionaries, whitening and DrLIM are learnt on ``--dict-images`` random training
images; the classifier is trained on all (or ``--train-limit``) training images and scored
on the full (or ``--test-limit``) test set. Timings are wall and CPU seconds on a shared
2-core machine: other jobs ran at the same time, so the load average is recorded too.

    python benchmarks/bench_deepsc.py                       # full run
    python benchmarks/bench_deepsc.py --quick               # 5k train / 2k test subsets
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsenet.cli.deepsc import save_atoms_png  # noqa: E402
from sparsenet.data import Dataset, load_dataset  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.sparse_coding.deepsc import DeepSC  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "deepsc"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _linear(C: float) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300, tol=1e-3))


def _score(
    feats_tr: np.ndarray, y_tr: np.ndarray, feats_te: np.ndarray, y_te: np.ndarray, C: float
) -> tuple[float, float]:
    t0 = time.perf_counter()
    clf = _linear(C).fit(feats_tr, y_tr)
    return float(clf.score(feats_te, y_te)), time.perf_counter() - t0


def _row(
    name: str,
    acc: float,
    n_feat: int,
    n_images: int,
    dict_s: float,
    ext_s: float,
    ext_cpu_s: float | None,
    clf_s: float,
) -> dict[str, Any]:
    return {
        "method": name,
        "test_accuracy": acc,
        "n_features": n_feat,
        "dictionary_s": dict_s,
        "extract_s": ext_s,
        "extract_cpu_s": ext_cpu_s,
        "extract_ms_per_image": 1000 * ext_s / n_images,
        "classifier_s": clf_s,
    }


def run_dataset(data: Dataset, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    xtr, ytr = data.x_train, data.y_train.numpy()
    xte, yte = data.x_test, data.y_test.numpy()
    n_img = len(xtr) + len(xte)
    rows = []
    print(f"\n{data!r}: {n_img} images, dictionaries on {args.dict_images}", flush=True)

    acc, clf_s = _score(
        xtr.reshape(len(xtr), -1).numpy(), ytr, xte.reshape(len(xte), -1).numpy(), yte, args.C
    )
    rows.append(_row("raw pixels + linear", acc, xtr[0].numel(), n_img, 0.0, 0.0, 0.0, clf_s))
    print(f"  raw pixels: {acc:.4f}", flush=True)

    common = dict(
        n_atoms=tuple(args.atoms),
        patch_size=(5, 2),
        patch_stride=(2, 1),
        alpha=args.alpha,
        encode_iter=args.encode_iter,
        dict_images=args.dict_images,
        C=args.C,
        random_state=args.seed,
        verbose=not args.quiet,
    )
    for drlim in (False, True):
        m = DeepSC(drlim=drlim, **common).fit_features(xtr)
        c0 = time.process_time()
        ftr, fte = m.transform(xtr), m.transform(xte)
        cpu = time.process_time() - c0
        t = m.timings_
        if not drlim:  # the 1-layer (ScSPM-like) row: first block of these features
            n1 = m.layer_features_[0]
            acc, clf_s = _score(ftr[:, :n1], ytr, fte[:, :n1], yte, args.C)
            l1 = t["transform_layer_s"][0]
            rows.append(
                _row(
                    "1-layer SC + pyramid (ScSPM-like)",
                    acc,
                    n1,
                    n_img,
                    t["dictionary_s"],
                    l1,
                    None,
                    clf_s,
                )
            )
            print(f"  1-layer: {acc:.4f}", flush=True)
            if data.name == "fashion-mnist" or not (out / "atoms.png").exists():
                save_atoms_png(
                    m.first_layer_atoms(),
                    out / f"atoms-{data.name}.png",
                    f"DeepSC first-layer atoms, {data.name}",
                )
        acc, clf_s = _score(ftr, ytr, fte, yte, args.C)
        name = "2-layer DeepSC + DrLIM" if drlim else "2-layer DeepSC, no DrLIM"
        rows.append(
            _row(name, acc, ftr.shape[1], n_img, t["dictionary_s"], t["transform_s"], cpu, clf_s)
        )
        print(
            f"  {name}: {acc:.4f} (extract {t['transform_s']:.0f}s wall, {cpu:.0f}s CPU)",
            flush=True,
        )
    return {"dataset": data.name, "n_train": len(xtr), "n_test": len(xte), "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']} (train {result['n_train']}, test {result['n_test']})",
        f"{'method':36s} {'acc':>7s} {'feats':>6s} {'dict s':>7s} {'extract s':>9s} "
        f"{'cpu s':>7s} {'ms/img':>7s}",
    ]
    for r in result["rows"]:
        cpu = "" if r["extract_cpu_s"] is None else f"{r['extract_cpu_s']:.0f}"
        lines.append(
            f"{r['method']:36s} {r['test_accuracy']:7.4f} {r['n_features']:6d} "
            f"{r['dictionary_s']:7.1f} {r['extract_s']:9.1f} {cpu:>7s} "
            f"{r['extract_ms_per_image']:7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--datasets", default="fashion-mnist,mnist")
    p.add_argument("--atoms", type=lambda s: [int(v) for v in s.split(",")], default=[128, 256])
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--encode-iter", type=int, default=8)
    p.add_argument("--dict-images", type=int, default=5000)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="5k train / 2k test subsets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.train_limit, args.test_limit = args.train_limit or 5000, args.test_limit or 2000
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    results = []
    for name in args.datasets.split(","):
        data = load_dataset(name)
        if args.train_limit or args.test_limit:
            data = data.subset(args.train_limit or None, args.test_limit or None)
        res = run_dataset(data, args, args.out)
        results.append(res)
        print(format_table(res), flush=True)
    report = {
        "benchmark": "deepsc",
        "commit": _commit(),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, shared with other jobs",
        "torch_threads": args.threads,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "total_s": time.perf_counter() - t0,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    suffix = "-quick" if args.quick else ""
    write_json(args.out / f"deepsc{suffix}.json", report)
    print(f"\nwrote {args.out / f'deepsc{suffix}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
