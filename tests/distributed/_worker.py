"""Computations run once under ``torchrun`` (2 ranks) and once as a plain process.

``python tests/distributed/_worker.py OUT.pt`` (or the same under
``python -m torch.distributed.run --nproc-per-node 2 ...``) writes, from rank 0, a dict of
results that tests/distributed/test_equivalence.py compares between the two runs. Every
rank passes the *same* data; the library shards it.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from sparsenet import distributed as dist_
from sparsenet.data import digits
from sparsenet.prune import prune
from sparsenet.prune.obd import hessian_diagonal
from sparsenet.prune.sensitivity import sensitivity
from sparsenet.share import share_weights
from sparsenet.sparse_coding import DictionaryLearner
from sparsenet.training import TrainConfig, fit


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10),
    )


def main(path: str) -> None:
    dist_.init_from_env()
    ds = digits()
    out: dict[str, object] = {"world": dist_.world_size()}
    # odd sizes: the shards differ in length (151 / 150 rows)
    x, y = ds.x_train[:301], ds.y_train[:301]
    net = conv_net()
    for form in ("full", "lm"):
        out[f"obd_{form}"] = hessian_diagonal(net, (x, y), form=form, batch_size=64)
    out["sensitivity"] = sensitivity(
        net, (ds.x_test[:151], ds.y_test[:151]), method="obd", sparsities=(0.0, 0.5, 0.9),
        score_data=(x, y),
    )

    X = ds.x_train[:400].flatten(1).double()  # (400, 64)
    learner = DictionaryLearner(16, alpha=0.2, batch_size=50, max_iter=2, tol=1e-10, random_state=0).fit(X)
    out["dictionary"] = torch.from_numpy(learner.components_)
    out["dictionary_steps"] = learner.n_steps_
    out["codes"] = learner.transform(X[:101])

    # masked, then shared fine-tuning through fit (DDP); the fit checks replicas each epoch
    # when SPARSENET_DEBUG_DISTRIBUTED=1
    xt, yt = ds.x_train[:320], ds.y_train[:320]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    torch.manual_seed(1)
    for p in mlp.parameters():
        nn.init.normal_(p, std=0.3)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3, quiet=True)
    fit(mlp, (xt, yt), cfg)
    prune(mlp, "magnitude", sparsity=0.7)
    fit(mlp, (xt, yt), cfg)
    dist_.check_replicas_equal(mlp, "masked")
    out["masked"] = {k: v.clone() for k, v in mlp.state_dict().items()}
    share_weights(mlp, weight_bits={"fc": 3}, seed=0)
    fit(mlp, (xt, yt), cfg.replace(optimizer="adam", lr=1e-3))
    dist_.check_replicas_equal(mlp, "shared")
    out["shared"] = {k: v.clone() for k, v in mlp.state_dict().items()}

    if dist_.is_main():
        torch.save(out, path)


if __name__ == "__main__":
    main(sys.argv[1])
    dist_.finish(0)
