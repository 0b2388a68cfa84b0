"""Scoring a trained model: :func:`logits`, :func:`predict` (labels) and :func:`evaluate`.

One data convention everywhere: ``data`` is an ``(x, y)`` pair of tensors — a split of a
:class:`sparsenet.data.Dataset` (``data.test``, ``data.train``) is one::

    evaluate(model, data.test)    # {"loss", "accuracy", "n"}
    predict(model, x)             # labels, int64 (N,)
    logits(model, x)              # float (N, classes)

:func:`sharded_evaluate` is :func:`evaluate` with each ``torch.distributed`` rank scoring
its shard (a no-op wrapper in one process).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .. import distributed as dist_
from ..errors import SparsenetError
from .config import LossFn

__all__ = ["evaluate", "logits", "predict", "sharded_evaluate"]

Pairs = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def logits(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1000, device: str = "cpu"
) -> torch.Tensor:
    """Outputs of ``model`` on ``x``, in eval mode, batched.

    Parameters
    ----------
    model : the network; its training mode is restored afterwards.
    x : Tensor, shape (N, ...).
    batch_size : samples per forward pass.
    device : where the batches run; the result is on the CPU.

    Returns
    -------
    Tensor, shape (N, classes); ``torch.empty(0)`` for N = 0.
    """
    was_training = model.training
    model.eval()
    try:
        outs = [
            model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1000, device: str = "cpu"
) -> torch.Tensor:
    """Predicted class labels of ``model`` on ``x``: the arg-max of :func:`logits`.

    Parameters
    ----------
    model, x, batch_size, device : as for :func:`logits`; x has shape (N, ...).

    Returns
    -------
    Tensor, shape (N,), int64.
    """
    out = logits(model, x, batch_size, device)
    if len(x) == 0:
        return torch.empty(0, dtype=torch.int64)
    return out.argmax(1).to(torch.int64)


def as_pair(data: Any, y: Any = None, *, caller: str = "evaluate") -> Pairs:
    """``data`` as an ``(x, y)`` pair; ``(x, y)`` as two arguments is deprecated.

    Raises
    ------
    SparsenetError
        ``data`` is not a pair of tensors of equal length.
    """
    if y is not None:
        warnings.warn(
            f"{caller}(model, x, y) is deprecated; pass one (x, y) pair: "
            f"{caller}(model, (x, y)) or {caller}(model, dataset.test)",
            DeprecationWarning,
            stacklevel=3,
        )
        data = (data, y)
    if hasattr(data, "x_test") and hasattr(data, "y_test"):
        raise SparsenetError(
            f"{caller}: got a whole Dataset; expected one split of it, "
            "e.g. dataset.test or dataset.train"
        )
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise SparsenetError(
            f"{caller}: data is a {type(data).__name__}; expected an (x, y) pair of tensors"
        )
    x, labels = data
    if not isinstance(x, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise SparsenetError(
            f"{caller}: data holds ({type(x).__name__}, {type(labels).__name__}); "
            "expected (x, y) tensors"
        )
    if len(x) != len(labels):
        raise SparsenetError(f"{caller}: {len(x)} inputs but {len(labels)} labels; expected equal")
    return x, labels


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Pairs,
    y: torch.Tensor | None = None,
    *,
    batch_size: int = 1000,
    loss_fn: LossFn | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data``.

    Parameters
    ----------
    model : the network.
    data : ``(x, y)`` with x of shape (N, ...) and y (N,) int64 — e.g. ``dataset.test``.
    y : deprecated: ``evaluate(model, x, y)`` still works, with a DeprecationWarning.
    batch_size, device : as for :func:`logits`.
    loss_fn : ``loss_fn(logits, y)`` → scalar mean; default cross-entropy.

    Returns
    -------
    dict with ``loss`` (mean), ``accuracy`` in [0, 1] and ``n`` (NaN scores for N = 0).
    """
    x, labels = as_pair(data, y)
    loss_fn = loss_fn or nn.functional.cross_entropy
    out = logits(model, x, batch_size, device)
    if len(x) == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "n": 0}
    loss = float(loss_fn(out, labels))
    acc = float((out.argmax(1) == labels).double().mean())
    return {"loss": loss, "accuracy": acc, "n": len(x)}


def sharded_evaluate(model: nn.Module, data: Pairs, **kwargs: Any) -> dict[str, float]:
    """:func:`evaluate` with each rank scoring its shard of ``data = (x, y)``.

    The per-shard mean loss times the shard size and the number correct are summed over
    ranks, so accuracy is exactly the single-process one and the loss equal to float
    rounding (for a mean-reduced ``loss_fn``, the default cross-entropy).
    """
    x, labels = as_pair(data, caller="sharded_evaluate")
    n = len(x)
    if not dist_.is_distributed() or n < dist_.world_size():
        return evaluate(model, (x, labels), **kwargs)
    lo, hi = dist_.shard_bounds(n)
    ev = evaluate(model, (x[lo:hi], labels[lo:hi]), **kwargs)
    sums = torch.tensor(
        [ev["loss"] * (hi - lo), round(ev["accuracy"] * (hi - lo))], dtype=torch.float64
    )
    dist_.all_reduce_sum(sums)
    return {"loss": float(sums[0] / n), "accuracy": float(sums[1] / n), "n": n}
