"""Held-out sweep of DeepSC's pooling, feature normalisation and C on one extraction.

Fits one DeepSC model (JSON of constructor arguments; its dictionaries, whitening and DrLIM
do not depend on the pyramid or the normalisation) on ``--n`` training images, extracts
the features of those and of ``--held-out`` *other training images* once, with a superset
pyramid (every plain and overlapping level any variant uses), and then scores every
variant (pyramid levels, overlapping levels, ``feature_norm``, layers used) × C by slicing
those columns and normalising each layer's block as :class:`DeepSC` would. The test split
is never loaded.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 1 python benchmarks/sweep_grid_deepsc.py \\
        '{"n_components": [64, 128]}' --n 15000 --held-out 5000 --out sweep-a \\
        --variants 'p=1,2,4;norm=none' 'p=1,2,4;norm=sqrt' --C 0.01,0.003

A variant is ``key=value`` pairs separated by ``;``: ``p`` plain levels (``1,2,4``), ``o``
overlapping levels (empty: none), ``norm`` (``none``, ``sqrt``, ``l2``, ``sqrt+l2``),
``layers`` (``1``: the first layer's block only; default all). ``--split holdout`` instead
fits on the training split minus a stratified ``--held-out`` part
(:func:`sparsenet.data.holdout`, seed 0) and scores on that part. Each row goes to
``OUT/sweep.jsonl`` and stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsenet.data import holdout, load_dataset  # noqa: E402
from sparsenet.sparse_coding.deepsc import DeepSC  # noqa: E402
from sparsenet.sparse_coding.linear import make_classifier  # noqa: E402
from sparsenet.sparse_coding.pooling import normalize_features, pyramid_size  # noqa: E402

OUT_ROOT = Path(__file__).resolve().parent / "results" / "deepsc"


def parse_variant(text: str) -> dict[str, Any]:
    """``'p=1,2,4;o=2;norm=sqrt;layers=1'`` → dict (defaults: p 1,2,4, o none, norm none);
    ``p2=1,2`` (``o2=...``) sets layer 2's levels alone."""
    v: dict[str, Any] = {"p": (1, 2, 4), "o": (), "norm": None, "layers": 0}
    for part in filter(None, text.split(";")):
        key, _, val = part.partition("=")
        if key in ("p", "o") or key[:1] in ("p", "o") and key[1:].isdigit():
            v[key] = tuple(int(x) for x in val.split(",") if x)
        elif key == "norm":
            v[key] = None if val in ("", "none") else val
        elif key == "layers":
            v[key] = int(val)
        else:
            raise SystemExit(f"variant {text!r}: unknown key {key!r}")
    return v


def grids(model: DeepSC) -> list[tuple[int, int]]:
    """The code grid (gh, gw) of each fitted layer."""
    h, w = model.input_shape_[:2]
    out = []
    for i, layer in enumerate(model.layers_):
        h, w = (h - layer.size) // layer.stride + 1, (w - layer.size) // layer.stride + 1
        out.append((h, w))
        if i < len(model.layers_) - 1:
            h = (h - model.pool_size) // model.pool_stride + 1
            w = (w - model.pool_size) // model.pool_stride + 1
    return out


def columns(model: DeepSC, variant: dict[str, Any]) -> list[np.ndarray]:
    """Per layer, the superset feature columns (global indices) of ``variant``'s pyramid."""
    out, base = [], 0
    for i, ((gh, gw), width) in enumerate(zip(grids(model), model.layer_features_, strict=True)):
        levels, overlap = model._levels(gh, gw, i)  # the superset's cells, in order
        kp = width // pyramid_size(levels, overlap)
        start, where = 0, {}
        for kind, group in (("p", levels), ("o", overlap)):
            for lv in group:
                where[kind, lv] = start
                start += lv * lv
        sub = DeepSC(pyramid=variant.get(f"p{i + 1}", variant["p"]),
                     pyramid_overlap=variant.get(f"o{i + 1}", variant["o"]))._levels(gh, gw)
        cols = [
            base + kp * (where[kind, lv] + c) + np.arange(kp)
            for kind, group in zip(("p", "o"), sub, strict=True)
            for lv in group
            for c in range(lv * lv)
        ]
        out.append(np.concatenate(cols))
        base += width
    return out


def variant_features(feats: np.ndarray, cols: list[np.ndarray], norm: str | None,
                     inplace: bool = False, rows: int = 2000) -> np.ndarray:
    """The variant's (N, F') features: each layer's columns, normalised per image.

    Filled ``rows`` images at a time into one new array, so memory is ``feats`` plus the
    result; with ``inplace``, when the variant is all of ``feats`` in order, ``feats`` is
    normalised in place and returned.
    """
    every = np.concatenate(cols)
    whole = inplace and feats.flags.writeable and len(every) == feats.shape[1] and bool(np.all(every == np.arange(len(every))))
    out = feats if whole else np.empty((len(feats), len(every)), dtype=np.float32)
    for r in range(0, len(feats), rows):
        start = 0
        for c in cols:
            block = torch.from_numpy(np.ascontiguousarray(feats[r : r + rows][:, c]))
            out[r : r + rows, start : start + len(c)] = normalize_features(block, norm).numpy()
            start += len(c)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="DeepSC constructor arguments as JSON")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--n", type=int, default=15000, help="training images (--split subset)")
    p.add_argument("--held-out", type=int, default=5000, help="held-out training images")
    p.add_argument("--split", choices=["subset", "holdout"], default="subset")
    p.add_argument("--variants", nargs="+", default=["p=1,2,4"])
    p.add_argument("--C", default="0.01", help="classifier C values, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--superset", default="", help="pyramid to extract, as a variant "
                   "('p=1,2,4,6;o=3'); default: the union of the variants' levels")
    p.add_argument("--cache", default=None,
                   help="folder keeping the extracted features for a later run of the same "
                        "model and split (the extraction time is then the load time)")
    p.add_argument("--out", required=True, help="folder name under benchmarks/results/deepsc")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [(text, parse_variant(text)) for text in args.variants]
    data = load_dataset(args.data)
    if args.split == "holdout":
        part = holdout(data, args.held_out, seed=0)
        xtr, ytr, xval, yval = part.x_train, part.y_train.numpy(), part.x_test, part.y_test.numpy()
    else:
        perm = np.random.RandomState(0).permutation(len(data.x_train))
        fit_idx, val_idx = perm[: args.n], perm[args.n : args.n + args.held_out]
        labels = data.y_train.numpy()
        xtr, ytr = data.x_train[fit_idx], labels[fit_idx]
        xval, yval = data.x_train[val_idx], labels[val_idx]
    cfg = json.loads(args.config)
    n_layers = len(cfg.get("n_components", DeepSC().n_components))

    def union(kind: str, wanted: list[dict[str, Any]]) -> tuple[tuple[int, ...], ...]:
        """Per layer, every level of ``kind`` ("p" or "o") that a variant uses there."""
        return tuple(
            tuple(sorted({lv for v in wanted for lv in v.get(f"{kind}{i + 1}", v[kind])}))
            for i in range(n_layers)
        )

    plain, over = union("p", [v for _, v in variants]), union("o", [v for _, v in variants])
    if args.superset:  # a fixed superset (so that --cache finds the same extraction)
        sup = parse_variant(args.superset)
        s_plain, s_over = union("p", [sup]), union("o", [sup])
        if not all(set(a) <= set(b) for a, b in zip(plain + over, s_plain + s_over, strict=True)):
            raise SystemExit(f"--superset {args.superset!r} lacks levels the variants use")
        plain, over = s_plain, s_over
    model = DeepSC(**{"n_jobs": args.threads, **cfg, "pyramid": tuple(plain),
                      "pyramid_overlap": tuple(over), "feature_norm": None})
    t0 = time.perf_counter()
    model.fit_features(xtr)
    t1, c1 = time.perf_counter(), time.process_time()
    cache = None if args.cache is None else Path(args.cache) / (
        f"{args.data}-{args.split}-{args.n}-{args.held_out}-"
        + hashlib.sha256(json.dumps(model.get_params(), sort_keys=True, default=str)
                         .encode()).hexdigest()[:16])
    cached = cache is not None and (cache / "ftr.npy").exists()
    if cached:  # features of an earlier run (extract_s below is then the load time)
        ftr = np.load(cache / "ftr.npy", mmap_mode="r")  # read-only: variants copy columns
        fval = np.load(cache / "fval.npy", mmap_mode="r")
        model.layer_features_ = json.loads((cache / "blocks.json").read_text())
    else:
        ftr, fval = model.transform(xtr), model.transform(xval)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(cache / "ftr.npy", ftr)
            np.save(cache / "fval.npy", fval)
            (cache / "blocks.json").write_text(json.dumps(model.layer_features_))
    t2, c2 = time.perf_counter(), time.process_time()
    n_img = len(xtr) + len(xval)
    head = {
        "config": cfg, "data": args.data, "split": args.split, "n_fit": len(xtr),
        "n_held_out": len(xval), "threads": args.threads, "dict_s": t1 - t0,
        "extract_s": t2 - t1, "extract_cpu_s": c2 - c1, "features_from_cache": cached,
        "extract_ms_per_image": 1000 * (t2 - t1) / n_img,
        "superset": {"pyramid": [list(p) for p in plain], "overlap": [list(o) for o in over],
                     "features": model.layer_features_},
        "load_average": os.getloadavg(),
    }
    out = OUT_ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "sweep.jsonl").open("a")
    log.write(json.dumps({"extraction": head}) + "\n")
    log.flush()
    print(json.dumps(head), flush=True)
    for text, v in variants:
        cols = columns(model, v)
        if v["layers"]:
            cols = cols[: v["layers"]]
        alone = len(variants) == 1  # the features are not needed afterwards
        vtr = variant_features(ftr, cols, v["norm"], inplace=alone)
        vval = variant_features(fval, cols, v["norm"], inplace=alone)
        Cs = [float(c) for c in args.C.split(",")]
        for C in Cs:
            t = time.perf_counter()
            clf = make_classifier("logreg", C, copy=len(Cs) > 1).fit(vtr, ytr)
            acc = float(clf.score(vval, yval))
            row = {"config": cfg, "variant": text, "C": C, "held_out_acc": acc,
                   "features": int(vtr.shape[1]), "fit_s": time.perf_counter() - t}
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"  {text:40s} C={C:<6g} {acc:.4f}  {vtr.shape[1]:6d} feats  "
                  f"fit {row['fit_s']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
