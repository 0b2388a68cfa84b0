"""``sparsenet deepsc``: fit Deep Sparse Coding features and a linear classifier on a data set."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset, load_dataset
from ..distributed import barrier, is_main, world_size
from ..errors import SpecError
from ..io import write_json
from ..progress import log
from ..sparse_coding.deepsc_report import save_atoms_png, write_report
from .common import add_output_args, emit, nonneg_int, positive_float, positive_int, seed_int

__all__ = ["register", "cmd_deepsc", "random_subset", "save_atoms_png"]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1, e.g. 128,256")
    return values


MODEL_FILE = "deepsc-model.npz"

# Per-layer bounds: a dictionary of K atoms costs K x K Gram matrices and (n_patches, K)
# codes; past these the fit runs out of memory long after it started.
MAX_ATOMS = 4096
MAX_PATCH = 64


def _bounded_list(limit: int, what: str) -> Any:
    def conv(text: str) -> list[int]:
        values = _int_list(text)
        if max(values) > limit:
            raise argparse.ArgumentTypeError(
                f"{text!r}: at most {limit} {what} per layer (got {max(values)})"
            )
        return values

    return conv


def _levels_arg(text: str) -> tuple[Any, ...]:
    """``1,2,4`` → (1, 2, 4) for every layer; ``1,2,4,8/1,2`` → ((1, 2, 4, 8), (1, 2))."""
    parts = [tuple(_int_list(part)) for part in text.split("/")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not values or not all(v > 0 and np.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected finite numbers > 0, e.g. 0.5,0.3")
    return values


def register(sub: Any) -> None:
    p = sub.add_parser(
        "deepsc", help="Deep Sparse Coding features + a linear classifier (He et al. 2014)"
    )
    p.add_argument(
        "--data", default="fashion-mnist", help="fashion-mnist, mnist, digits or an IDX dir"
    )
    p.add_argument("--layers", type=positive_int, default=2, help="number of sparse-coding layers")
    p.add_argument(
        "--atoms", type=_bounded_list(MAX_ATOMS, "atoms"), default=None,
        help="atoms per layer, e.g. 64,128 (default 64,128; more layers repeat the last)"
    )
    p.add_argument("--patch", type=_bounded_list(MAX_PATCH, "pixels of patch side"), default=None,
                   help="patch size per layer (5,2)")
    p.add_argument("--stride", type=_int_list, default=None, help="patch stride per layer (1,1)")
    p.add_argument("--alpha", type=_float_list, default=[0.5], help="lasso penalty (per layer)")
    p.add_argument("--pool", type=positive_int, default=4, help="local max-pool size p (p×p)")
    p.add_argument("--pool-stride", type=positive_int, default=2)
    p.add_argument("--pyramid", type=_levels_arg, default=(1, 2, 4),
                   help="spatial-pyramid levels pooled from every layer (1,2,4), or per layer "
                        "separated by '/' (1,2,4,8/1,2)")
    p.add_argument("--overlap", type=_int_list, default=[],
                   help="extra pyramid levels of half-overlapping cells, e.g. 3 (default none)")
    p.add_argument("--feature-norm", choices=["none", "sqrt", "l2", "sqrt+l2"], default="none",
                   help="normalise each layer's pooled features per image before the classifier")
    p.add_argument("--no-drlim", action="store_true", help="skip DrLIM reduction between layers")
    p.add_argument("--components", type=positive_int, default=64, help="DrLIM output dimension")
    p.add_argument("--drlim-iter", type=positive_int, default=150, help="DrLIM Adam steps")
    p.add_argument("--no-whiten", action="store_true", help="skip ZCA whitening of patches")
    p.add_argument("--classifier", choices=["logreg", "softmax", "svc"], default="logreg",
                   help="logreg: scikit-learn lbfgs (default); softmax: the torch L-BFGS one")
    p.add_argument("--C", type=positive_float, default=0.01, help="classifier regularisation")
    p.add_argument("--encode-iter", type=positive_int, default=5,
                   help="FISTA iterations (--encoder cd: at most this many sweeps)")
    p.add_argument("--encoder", choices=["fista", "cd"], default="fista",
                   help="fista: the encoder the published figures used; cd: the exact lasso")
    p.add_argument("--threads", type=nonneg_int, default=0,
                   help="threads for numba, torch and BLAS (0: all cores, shared among "
                        "torchrun ranks)")
    p.add_argument(
        "--dict-images",
        type=positive_int,
        default=3000,
        help="training images the dictionaries are learnt on",
    )
    p.add_argument(
        "--train-limit",
        type=nonneg_int,
        default=0,
        help="use only the first N training images (0: all)",
    )
    p.add_argument(
        "--test-limit",
        type=nonneg_int,
        default=0,
        help="score only the first N test images (0: all)",
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True,
                   help="directory for report.md, results.json, atoms PNGs, deepsc-model.npz")
    add_output_args(p)
    p.set_defaults(func=cmd_deepsc)


# Per-layer defaults for a 2-layer model; with --layers 1 the first value is used, with more
# layers the last one repeats (unless the flag is given).
_DEFAULTS = {"--atoms": [64, 128], "--patch": [5, 2], "--stride": [1, 1]}


def _per_layer(values: list[Any] | None, n: int, flag: str) -> list[Any]:
    if values is None:
        d = _DEFAULTS[flag]
        return (d + d[-1:] * n)[:n]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SpecError(
            f"{flag} {','.join(map(str, values))}: expected 1 or {n} values (--layers {n})"
        )
    return values


def random_subset(data: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """``n_train`` / ``n_test`` random samples of each split (0: keep the whole split).

    Random rather than the first N, because some files (MNIST-5k) are sorted by label.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not n or n >= len(x):
            return x, y
        idx = torch.randperm(len(x), generator=gen)[:n].sort().values
        return x[idx], y[idx]

    xtr, ytr = pick(data.x_train, data.y_train, n_train)
    xte, yte = pick(data.x_test, data.y_test, n_test)
    return Dataset(data.name, xtr, ytr, xte, yte)


def cmd_deepsc(args: argparse.Namespace) -> int:
    from ..sparse_coding.deepsc import DeepSC

    n = args.layers
    # Under torchrun every rank fits (sparse coding and dictionary statistics are sharded);
    # only rank 0 prints and writes files.
    main = is_main()
    args.quiet = args.quiet or not main
    threads = args.threads or max(1, (os.cpu_count() or 1) // world_size())
    data = load_dataset(args.data)
    data = random_subset(data, args.train_limit, args.test_limit, args.seed)
    model = DeepSC(
        n_components=tuple(_per_layer(args.atoms, n, "--atoms")),
        patch_size=tuple(_per_layer(args.patch, n, "--patch")),
        patch_stride=tuple(_per_layer(args.stride, n, "--stride")),
        alpha=tuple(_per_layer(args.alpha, n, "--alpha")),
        whiten=not args.no_whiten,
        pool_size=args.pool,
        pool_stride=args.pool_stride,
        pyramid=args.pyramid,
        pyramid_overlap=tuple(args.overlap),
        feature_norm=None if args.feature_norm == "none" else args.feature_norm,
        drlim=not args.no_drlim,
        drlim_components=args.components,
        drlim_iter=args.drlim_iter,
        classifier=args.classifier,
        C=args.C,
        encode_iter=args.encode_iter,
        encode_method=args.encoder,
        dict_images=args.dict_images,
        random_state=args.seed,
        verbose=not args.quiet,
        n_jobs=threads,
    )
    log(f"DeepSC on {data!r}: {n} layer(s), atoms {list(model.n_components)}, "
        f"{threads} thread(s)", args.quiet)
    t0 = time.perf_counter()
    model.fit(data.x_train, data.y_train.numpy())
    fitted = dict(model.timings_)
    log(f"classifier on {model.n_features_out_} features; scoring the test set", args.quiet)
    t1 = time.perf_counter()
    acc = float(model.score(data.x_test, data.y_test.numpy()))
    score_s = time.perf_counter() - t1
    if not main:
        barrier()  # rank 0 writes the results
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_atoms_png(model.first_layer_atoms(), out / "atoms.png", f"first-layer atoms ({data.name})")
    model.dataset_ = data.name  # `sparsenet eval DIR/deepsc-model.npz` scores on it by default
    model.save(out / MODEL_FILE)  # arrays + JSON state, never pickle (sparse_coding.persist)
    result = {
        "dataset": data.name,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "test_accuracy": acc,
        "n_features": model.n_features_out_,
        "threads": threads,
        "seconds": time.perf_counter() - t0,
        "stages": {
            "dictionaries, whitening, DrLIM": fitted["dictionary_s"],
            "training features": fitted["transform_s"],
            "classifier fit": fitted["classifier_s"],
            "test features and scoring": score_s,
        },
        "timings": model.timings_,
        "params": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in model.get_params().items()
        },
        "out": os.fspath(out),
        "history": _history(out / "results.json"),
    }
    write_json(out / "results.json", result)
    write_report(out, model, result)
    emit(
        args,
        result,
        f"test accuracy {acc:.4f} ({data.name}, {n} layer(s), "
        f"{model.n_features_out_} features) -> {out}",
    )
    barrier()
    return 0


def _history(path: Path) -> list[dict[str, Any]]:
    """Earlier runs recorded in ``path`` (their own history flattened), oldest first; a
    missing or unreadable file is no history."""
    import json

    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict) or "test_accuracy" not in old:
        return []
    keep = ("dataset", "test_accuracy", "params", "seconds", "stages", "n_train", "n_test")
    earlier = [h for h in old.get("history", []) if isinstance(h, dict)]
    return [*earlier, {k: old.get(k) for k in keep}]
