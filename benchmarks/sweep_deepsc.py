"""Subset sweep for DeepSC's configuration: classifier C and first-layer geometry.

Fits one DeepSC configuration (JSON of constructor arguments) on ``n`` random Fashion-MNIST
training images (dictionaries on ``dict_images`` of them) and scores the linear classifier,
for several C, on 2,000 *other training images* (a held-out part of the training split; the
test set is not looked at), using the layer-1 block alone and all layers' features.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sweep_deepsc.py \
        '{"n_components": [64, 128], "patch_stride": [1, 1], "dict_images": 2000}' --C 0.01,0.003

``--classifiers`` instead fits, on the same features (all layers) and at the first C, the
linear classifiers DeepSC could use: its own float32 L-BFGS ``SoftmaxRegression``, and
scikit-learn's ``LogisticRegression`` (lbfgs, saga) and ``SGDClassifier`` (log loss, the
same L2 weight 1/(C·n)), each after a StandardScaler; it prints wall and CPU seconds of
each fit and the held-out accuracy. Fits cost about n × F per pass, so the times scale
linearly to the full 60,000 × 8,064 matrix (the iteration counts are the same or fewer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsenet.data import load_dataset  # noqa: E402
from sparsenet.sparse_coding.deepsc import DeepSC  # noqa: E402
from sparsenet.sparse_coding.linear import make_classifier  # noqa: E402


def compare_classifiers(
    ftr: np.ndarray, ytr: np.ndarray, fval: np.ndarray, yval: np.ndarray, C: float
) -> None:
    """Fit each candidate classifier on ``ftr`` and print its time and held-out accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(ftr)
    candidates = {
        "SoftmaxRegression (torch L-BFGS, 100 it)": lambda: make_classifier("logreg", C),
        "LogisticRegression lbfgs (100 it)": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=100)
        ),
        "LogisticRegression saga (10 ep)": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=C, solver="saga", max_iter=10, tol=1e-3)
        ),
        "SGDClassifier log_loss (10 ep)": lambda: make_pipeline(
            StandardScaler(),
            SGDClassifier(loss="log_loss", alpha=1.0 / (C * n), max_iter=10, tol=None,
                          random_state=0),
        ),
    }
    print(f"classifiers on {ftr.shape} {ftr.dtype} features, C={C}", flush=True)
    for name, build in candidates.items():
        clf = build()
        t, c = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(ftr, ytr)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        acc = clf.score(fval, yval)
        print(f"  {name:42s} held-out {acc:.4f}  fit {wall:6.1f}s wall {cpu:6.1f}s CPU",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="DeepSC constructor arguments as JSON")
    p.add_argument("--n", type=int, default=10000, help="training images")
    p.add_argument("--held-out", type=int, default=2000, help="held-out training images")
    p.add_argument("--C", default="0.01,0.003", help="classifier C values, comma-separated")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--classifiers", action="store_true", help="compare classifier solvers")
    p.add_argument("--threads", type=int, default=1, help="DeepSC n_jobs and torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = {"n_jobs": args.threads, **json.loads(args.config)}
    data = load_dataset(args.data)
    perm = np.random.RandomState(0).permutation(len(data.x_train))
    fit_idx, val_idx = perm[: args.n], perm[args.n : args.n + args.held_out]
    labels = data.y_train.numpy()
    xtr, ytr = data.x_train[fit_idx], labels[fit_idx]
    xval, yval = data.x_train[val_idx], labels[val_idx]
    model = DeepSC(**cfg)
    t0 = time.perf_counter()
    model.fit_features(xtr)
    t1 = time.perf_counter()
    ftr, fval = model.transform(xtr), model.transform(xval)
    t2 = time.perf_counter()
    blocks = model.layer_features_
    n_img = len(xtr) + len(xval)
    print(
        f"{cfg} dict {t1 - t0:.0f}s extract {t2 - t1:.0f}s "
        f"({1000 * (t2 - t1) / n_img:.2f} ms/img) features per layer {blocks}",
        flush=True,
    )
    if args.classifiers:
        compare_classifiers(ftr, ytr, fval, yval, float(args.C.split(",")[0]))
        return 0
    ends = {"layer 1": blocks[0], "all layers": sum(blocks)} if len(blocks) > 1 else {}
    for name, k in (ends or {"layer 1": blocks[0]}).items():
        for C in (float(c) for c in args.C.split(",")):
            t = time.perf_counter()
            clf = make_classifier("logreg", C).fit(ftr[:, :k], ytr)
            acc = clf.score(fval[:, :k], yval)
            print(f"  {name} C={C}: {acc:.4f} (fit {time.perf_counter() - t:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
