"""Fit one DeepSC configuration on the training split minus a held-out part and score it there.

The whole estimator path (``DeepSC.fit`` → ``score``), for checking a configuration's
held-out accuracy, time and memory (run it under ``/usr/bin/time -v``) without looking at
the test split:

    taskset -c 1 python benchmarks/deepsc_holdout_fit.py \\
        '{"n_components": [128, 128], "pyramid": [[1, 2, 4, 8], [1, 2]], "feature_norm": "sqrt", "C": 0.003}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsenet.data import holdout, load_dataset  # noqa: E402
from sparsenet.sparse_coding.deepsc import DeepSC  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="DeepSC constructor arguments as JSON")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--held-out", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    part = holdout(load_dataset(args.data), args.held_out, seed=0)
    model = DeepSC(**{"n_jobs": args.threads, **json.loads(args.config)})
    t0 = time.perf_counter()
    model.fit(part.x_train, part.y_train.numpy())
    acc = float(model.score(part.x_test, part.y_test.numpy()))
    print(json.dumps({"config": json.loads(args.config), "held_out_acc": acc,
                      "n_features": model.n_features_out_, "seconds": time.perf_counter() - t0,
                      "timings": model.timings_}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
