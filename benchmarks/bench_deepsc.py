"""Accuracy of Deep Sparse Coding features with a linear classifier, ingredient by ingredient.

For each data set (Fashion-MNIST, MNIST-5k) one table:

    raw pixels + linear                 the peer: standardised pixels, same classifier
    1-layer SC + pyramid (ScSPM-like)   layer-1 sparse codes, 1×1/2×2/4×4 max pooling
    2-layer DeepSC, no DrLIM            + local 4×4 pooling, a second sparse-coding layer
    2-layer DeepSC + DrLIM              + DrLIM reduction of the pooled codes between layers
    (--levers) one row per accuracy lever of issue 18, each its own model, with its own
    extraction time (benchmarks/_deepsc_levers.py)

The 1-layer row is the first block of the 2-layer (no DrLIM) features: the same seed gives
the same first-layer dictionary and codes, so its extraction time is that run's layer-1
time. Dictionaries, whitening and DrLIM are learnt on ``--dict-images`` random training
images; the classifier is trained on all (or ``--train-limit``) training images and scored
on the full (or ``--test-limit``) test set. Timings are wall and CPU seconds on a shared
2-core machine: other jobs ran at the same time, so the load average is recorded too.

    python benchmarks/bench_deepsc.py                       # full run
    python benchmarks/bench_deepsc.py --quick               # 5k train / 2k test subsets
    python benchmarks/bench_deepsc.py --compare-extraction 2000 --threads 1

``--compare-extraction N`` times feature extraction of N training images with the default
model, the torch path DeepSC used before (``SCLayer.codes``: ``sparse_encode`` FISTA on all
patches, then polarity split, pyramid and local pooling in torch) against the fused kernel
(:mod:`sparsenet.sparse_coding.layer_kernel`), chunk by chunk and interleaved (old then new,
new then old) in one process, so load changes hit both alike; it checks the features agree
and prints CPU and wall seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import git_commit  # noqa: E402  (benchmarks/_common.py)
from _deepsc_levers import LEVERS, lever_rows  # noqa: E402

from sparsenet.cli.deepsc import random_subset  # noqa: E402
from sparsenet.data import Dataset, load_dataset  # noqa: E402
from sparsenet.io import write_json  # noqa: E402
from sparsenet.sparse_coding.deepsc import DeepSC  # noqa: E402
from sparsenet.sparse_coding.deepsc_report import save_atoms_png  # noqa: E402
from sparsenet.sparse_coding.linear import make_classifier  # noqa: E402
from sparsenet.sparse_coding.pooling import (  # noqa: E402
    local_max_pool,
    pyramid_max_pool,
    split_polarity,
)
from sparsenet.sparse_coding.threads import limit_threads  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "deepsc"


def _score(
    feats_tr: np.ndarray, y_tr: np.ndarray, feats_te: np.ndarray, y_te: np.ndarray, C: float
) -> tuple[float, float]:
    t0 = time.perf_counter()
    clf = make_classifier("logreg", C).fit(feats_tr, y_tr)
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
        "extract_cpu_s_est": ext_cpu_s,  # wall × this run's CPU/wall ratio
        "extract_ms_per_image": 1000 * ext_s / n_images,
        "classifier_s": clf_s,
    }


def shared_features(
    plain: DeepSC | None, drlim: DeepSC, x: torch.Tensor, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Layer-1, layer-2 (no DrLIM) and layer-2 (DrLIM) features, layer 1 computed once.

    Both models have the same first layer (same seed, asserted by the caller), so its codes
    are encoded once per chunk and fed to both second layers. Returns the three feature
    blocks and the wall seconds of [layer 1, layer 2 plain, layer 2 DrLIM].
    """
    maps = x.permute(0, 2, 3, 1)  # (N, H, W, C)
    f1, f2, f2d, secs = [], [], [], [0.0, 0.0, 0.0]
    for j in range(0, len(maps), batch):
        t0 = time.perf_counter()
        chunk = maps[j : j + batch]
        if plain is None:
            feats1, reduced = drlim.layer_step(0, chunk)  # (B, g', g', d)
            t1 = time.perf_counter()
            feats2 = torch.zeros(len(feats1), 0)
        else:
            feats1, pooled = plain.layer_step(0, chunk)  # no reducer: (B, g', g', K')
            reducer = drlim.layers_[0].reducer
            assert reducer is not None
            reduced = reducer.transform(pooled)  # (B, g', g', d)
            t1 = time.perf_counter()
            feats2, _ = plain.layer_step(1, pooled)
        t2 = time.perf_counter()
        feats2d, _ = drlim.layer_step(1, reduced)
        t3 = time.perf_counter()
        for acc, f in ((f1, feats1), (f2, feats2), (f2d, feats2d)):
            acc.append(f)
        for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            secs[k] += dt
    return torch.cat(f1).numpy(), torch.cat(f2).numpy(), torch.cat(f2d).numpy(), secs


def run_dataset(
    data: Dataset, args: argparse.Namespace, out: Path, report: dict[str, Any]
) -> dict[str, Any]:
    xtr, ytr = data.x_train, data.y_train.numpy()
    xte, yte = data.x_test, data.y_test.numpy()
    n_img = len(xtr) + len(xte)
    rows: list[dict[str, Any]] = []
    result = {"dataset": data.name, "n_train": len(xtr), "n_test": len(xte), "rows": rows}
    report["results"].append(result)
    save = lambda: write_json(args.out / args.json_name, report)  # noqa: E731
    print(f"\n{data!r}: {n_img} images, dictionaries on {args.dict_images}", flush=True)

    if not args.skip_raw:
        acc, clf_s = _score(
            xtr.reshape(len(xtr), -1).numpy(), ytr, xte.reshape(len(xte), -1).numpy(), yte, args.C
        )
        rows.append(_row("raw pixels + linear", acc, xtr[0].numel(), n_img, 0.0, 0.0, None, clf_s))
        print(f"  raw pixels: {acc:.4f}", flush=True)
    save()

    common = dict(
        n_components=tuple(args.atoms),
        patch_stride=tuple(args.patch_stride),
        pool_stride=args.pool_stride,
        dict_epochs=args.dict_epochs,
        dict_tol=args.dict_tol,
        alpha=args.alpha,
        encode_iter=args.encode_iter,
        dict_images=args.dict_images,
        C=args.C,
        random_state=args.seed,
        verbose=not args.quiet,
        n_jobs=args.threads,
    )
    # --skip-drlim: the second model has no DrLIM (its rows are labelled so below)
    with_drlim = DeepSC(drlim=not args.skip_drlim, **common).fit_features(xtr)
    dict_drlim = with_drlim.timings_["dictionary_s"]
    plain = None if args.skip_plain else DeepSC(drlim=False, **common).fit_features(xtr)
    if plain is not None:  # same seed → same first layer, so layer 1 is encoded once
        assert torch.equal(plain.layers_[0].atoms, with_drlim.layers_[0].atoms)
    save_atoms_png(
        with_drlim.first_layer_atoms(),
        out / f"atoms-{data.name}.png",
        f"DeepSC layer-1 atoms, {data.name}",
    )

    c0, t0 = time.process_time(), time.perf_counter()
    tr1, tr2, tr2d, s_tr = shared_features(plain, with_drlim, xtr, args.batch)
    te1, te2, te2d, s_te = shared_features(plain, with_drlim, xte, args.batch)
    secs = [a + b for a, b in zip(s_tr, s_te, strict=True)]
    total_wall, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    result["extract_wall_s_all"] = total_wall
    result["extract_cpu_s_all"] = total_cpu
    result["extract_layer_s"] = {
        "layer1": secs[0],
        "layer2_plain": secs[1],
        "layer2_drlim": secs[2],
    }
    cpu_per_wall = total_cpu / total_wall
    print(f"  features of {n_img} images: {total_wall:.0f}s wall, {total_cpu:.0f}s CPU", flush=True)

    variants = [("1-layer SC + pyramid (ScSPM-like)", tr1, te1, dict_drlim, [secs[0]])]
    if plain is not None:
        variants.append(
            (
                "2-layer DeepSC, no DrLIM",
                np.hstack([tr1, tr2]),
                np.hstack([te1, te2]),
                plain.timings_["dictionary_s"],
                [secs[0], secs[1]],
            )
        )
    variants.append(
        (
            "2-layer DeepSC, no DrLIM" if args.skip_drlim else "2-layer DeepSC + DrLIM",
            np.hstack([tr1, tr2d]),
            np.hstack([te1, te2d]),
            dict_drlim,
            [secs[0], secs[2]],
        )
    )
    for name, ftr, fte, dict_s, parts in variants:
        acc, clf_s = _score(ftr, ytr, fte, yte, args.C)
        wall = sum(parts)
        rows.append(_row(name, acc, ftr.shape[1], n_img, dict_s, wall, wall * cpu_per_wall, clf_s))
        print(f"  {name}: {acc:.4f} ({ftr.shape[1]} features, extract {wall:.0f}s)", flush=True)
        save()
    del variants, ftr, fte, tr1, tr2, tr2d, te1, te2, te2d  # free the base rows' features
    if args.levers:  # issue 18's levers, each its own model (see _deepsc_levers.py)

        def add(name: str, acc: float, nf: int, dict_s: float, wall: float, cpu: float,
                clf_s: float) -> None:
            rows.append(_row(name, acc, nf, n_img, dict_s, wall, cpu, clf_s))
            save()

        lever_rows(data, common, LEVERS, add)
    return result


def _old_features(model: DeepSC, maps: torch.Tensor) -> torch.Tensor:
    """DeepSC's features as computed before the fused kernel: (B, F)."""
    parts = []
    for i, layer in enumerate(model.layers_):
        codes = layer.codes(maps, model.encode_iter)  # torch FISTA on all patches
        codes = split_polarity(codes) if model.polarity else codes
        levels = [lv for lv in model.pyramid if lv <= min(codes.shape[1], codes.shape[2])]
        parts.append(pyramid_max_pool(codes, levels or [1]))
        if i < len(model.layers_) - 1:
            maps = local_max_pool(codes, model.pool_size, model.pool_stride)
            if layer.reducer is not None:
                maps = layer.reducer.transform(maps)
    return torch.cat(parts, dim=1)


def compare_extraction(args: argparse.Namespace) -> int:
    """Old against new feature extraction, interleaved chunk by chunk (see the docstring)."""
    data = load_dataset(args.datasets.split(",")[0])
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(data.x_train), generator=gen)
    model = DeepSC(dict_images=args.dict_images, random_state=args.seed, n_jobs=args.threads)
    t0 = time.perf_counter()
    model.fit_features(data.x_train[perm[: args.dict_images]])
    print(f"dictionaries on {args.dict_images} images: {time.perf_counter() - t0:.0f}s",
          flush=True)
    x = data.x_train[perm[-args.compare_extraction :]].permute(0, 2, 3, 1)  # (N, H, W, C)
    cpu = {"old": 0.0, "new": 0.0}
    wall = {"old": 0.0, "new": 0.0}
    worst = 0.0
    with limit_threads(args.threads):
        model._features(x[:8], [0.0] * len(model.layers_))  # compile (or load) the kernel
        for n, j in enumerate(range(0, len(x), args.batch)):
            chunk = x[j : j + args.batch]
            got: dict[str, torch.Tensor] = {}
            for which in ("old", "new") if n % 2 == 0 else ("new", "old"):
                c, w = time.process_time(), time.perf_counter()
                if which == "old":
                    got[which] = _old_features(model, chunk)
                else:
                    got[which] = model._features(chunk, [0.0] * len(model.layers_))
                cpu[which] += time.process_time() - c
                wall[which] += time.perf_counter() - w
            worst = max(worst, float((got["old"] - got["new"]).abs().max()))
    n_img = len(x)
    print(f"extraction of {n_img} images, {args.threads} thread(s), default model, "
          f"features agree to {worst:.2e} (max abs difference)")
    for which in ("old", "new"):
        print(f"  {which}: {cpu[which]:7.1f}s CPU {wall[which]:7.1f}s wall "
              f"({1000 * wall[which] / n_img:.2f} ms/image wall)")
    print(f"  speed-up: {cpu['old'] / cpu['new']:.2f}x CPU, {wall['old'] / wall['new']:.2f}x wall",
          flush=True)
    return 0


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']} (train {result['n_train']}, test {result['n_test']})",
        f"{'method':48s} {'acc':>7s} {'feats':>6s} {'dict s':>7s} {'extract s':>9s} "
        f"{'cpu s':>7s} {'ms/img':>7s}",
    ]
    for r in result["rows"]:
        cpu = "" if r["extract_cpu_s_est"] is None else f"{r['extract_cpu_s_est']:.0f}"
        lines.append(
            f"{r['method']:48s} {r['test_accuracy']:7.4f} {r['n_features']:6d} "
            f"{r['dictionary_s']:7.1f} {r['extract_s']:9.1f} {cpu:>7s} "
            f"{r['extract_ms_per_image']:7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    d = DeepSC().get_params()  # the benchmark's defaults are the estimator's defaults
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--datasets", default="fashion-mnist,mnist")
    p.add_argument("--atoms", type=lambda s: [int(v) for v in s.split(",")], default=list(d["n_components"]))
    p.add_argument("--alpha", type=float, default=d["alpha"])
    p.add_argument("--patch-stride", type=lambda s: [int(v) for v in s.split(",")], default=list(d["patch_stride"]))
    p.add_argument("--pool-stride", type=int, default=d["pool_stride"])
    p.add_argument("--dict-epochs", type=int, default=d["dict_epochs"])
    p.add_argument("--dict-tol", type=float, default=d["dict_tol"])
    p.add_argument("--skip-raw", action="store_true", help="skip the raw-pixel row")
    p.add_argument("--encode-iter", type=int, default=d["encode_iter"])
    p.add_argument("--dict-images", type=int, default=d["dict_images"])
    p.add_argument("--C", type=float, default=d["C"])
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="5k train / 2k test subsets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--skip-plain", action="store_true", help="skip the 2-layer run without DrLIM (saves time)"
    )
    p.add_argument(
        "--skip-drlim",
        action="store_true",
        help="with --skip-plain: run the 2-layer model without DrLIM only (a separate process)",
    )
    p.add_argument("--threads", type=int, default=2, help="numba, torch and BLAS threads")
    p.add_argument("--compare-extraction", type=int, default=0, metavar="N",
                   help="time old (torch) against new (fused kernel) extraction on N images")
    p.add_argument("--batch", type=int, default=500, help="images per feature chunk")
    p.add_argument("--levers", action="store_true",
                   help="add a row per accuracy lever of issue 18 (_deepsc_levers.LEVERS)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.skip_drlim and not args.skip_plain:
        p.error("--skip-drlim needs --skip-plain (the no-DrLIM model then takes its place)")
    if args.quick:
        args.train_limit, args.test_limit = args.train_limit or 5000, args.test_limit or 2000
    torch.set_num_threads(args.threads)
    if args.compare_extraction:
        return compare_extraction(args)
    args.out.mkdir(parents=True, exist_ok=True)
    args.json_name = "deepsc-quick.json" if args.quick else "deepsc.json"
    report: dict[str, Any] = {
        "benchmark": "deepsc",
        "commit": git_commit(),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, shared with other jobs",
        "torch_threads": args.threads,
        "load_average_start": os.getloadavg(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [],
    }
    t0 = time.perf_counter()
    # one thread count for numba, torch and BLAS (layer_step and the classifiers run
    # outside DeepSC's own limits)
    with limit_threads(args.threads):
        for name in args.datasets.split(","):
            data = random_subset(load_dataset(name), args.train_limit, args.test_limit, args.seed)
            res = run_dataset(data, args, args.out, report)
            print(format_table(res), flush=True)
            report["load_average_end"] = os.getloadavg()
            report["total_s"] = time.perf_counter() - t0
            write_json(args.out / args.json_name, report)
    print(f"\nwrote {args.out / args.json_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
