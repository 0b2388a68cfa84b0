"""Does a model take a data set's inputs and give one logit per class? Checked before work.

``sparsenet eval d.pt --data mnist`` with a model trained on 8×8 digits would otherwise
fail deep inside the first matrix product (``mat1 and mat2 shapes cannot be
multiplied``), after a pipeline had already written its first checkpoint.
:func:`check_model_fits` runs the model on two test samples and raises a
:class:`~sparsenet.errors.DataError` naming both shapes instead.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import Dataset
from .errors import DataError

__all__ = ["check_model_fits"]


@torch.no_grad()
def check_model_fits(model: nn.Module, data: Dataset, source: str = "the model") -> None:
    """Raise :class:`DataError` unless ``model(x)`` of ``data``'s inputs is (N, num_classes).

    Parameters
    ----------
    model : any module taking a batch of ``data``'s inputs (N, *data.input_shape).
    data : the data set the command is about to use.
    source : how to name the model in the message (its file, usually).
    """
    x = data.x_test[:2] if len(data.x_test) else data.x_train[:2]
    if len(x) == 0:
        return
    shown = "×".join(str(d) for d in x.shape[1:])
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(
            f"{source} does not fit data set {data.name!r}: it cannot take its "
            f"{shown} inputs ({first})"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != data.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"{source} does not fit data set {data.name!r}: it gives outputs of shape {got} "
            f"for {shown} inputs, expected ({len(x)}, {data.num_classes}) class scores"
        )
