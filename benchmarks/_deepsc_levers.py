"""Rows of the DeepSC ingredients table for the accuracy levers of issue 18.

Each lever row is its own :class:`DeepSC` model (the default one plus the lever's
constructor arguments, cumulative as listed in :data:`LEVERS`): dictionaries learnt on the
same ``--dict-images`` training images, features of every training and test image
extracted and timed (wall and CPU), the linear classifier fitted on the training features
and scored once on the test features. Used by ``bench_deepsc.py --levers``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sparsenet.data import Dataset
from sparsenet.sparse_coding.deepsc import DeepSC
from sparsenet.sparse_coding.linear import fit_in_place, make_classifier

__all__ = ["LEVERS", "lever_rows"]

# (row name, DeepSC arguments over the default model); each adds to the row before it
FINE = {"feature_norm": "sqrt", "pyramid": ((1, 2, 4, 8), (1, 2))}
LEVERS: list[tuple[str, dict[str, Any]]] = [
    ("2-layer DeepSC + DrLIM + sqrt feature norm", {"feature_norm": "sqrt"}),
    ("  + pyramid 1,2,4,8 on layer 1, 1,2 on layer 2", FINE),
    ("  + 128 layer-1 atoms, C = 0.003 (the preset)",
     {**FINE, "n_components": (128, 128), "C": 0.003}),
]


def lever_rows(
    data: Dataset,
    common: dict[str, Any],
    levers: list[tuple[str, dict[str, Any]]],
    add_row: Callable[[str, float, int, float, float, float, float], None],
) -> None:
    """Fit, extract and score each lever model; ``add_row(name, acc, n_features, dict_s,
    extract_wall_s, extract_cpu_s, classifier_s)`` records each row as it is done."""
    xtr, ytr = data.x_train, data.y_train.numpy()
    xte, yte = data.x_test, data.y_test.numpy()
    for name, extra in levers:
        model = DeepSC(**{**common, **extra})
        model.fit_features(xtr)
        t0, c0 = time.perf_counter(), time.process_time()
        ftr, fte = model.transform(xtr), model.transform(xte)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        clf = make_classifier(model.classifier, model.C, model.random_state)
        fit_in_place(clf, ftr, ytr)  # standardises ftr in place: memory is ftr alone
        clf_s = time.perf_counter() - t1
        acc = float(np.mean(clf.predict(fte) == yte))
        add_row(name, acc, ftr.shape[1], model.timings_["dictionary_s"], wall, cpu, clf_s)
        print(f"  {name}: {acc:.4f} ({ftr.shape[1]} features, extract {wall:.0f}s)", flush=True)
        del ftr, fte
