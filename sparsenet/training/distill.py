"""Knowledge distillation (Hinton et al., 2015) as a :class:`~.callbacks.Callback`.

Retraining a pruned or shared model on the labels alone lets it drift away from the dense
model it came from: on Fashion-MNIST, LeNet-300 retrained at 80 % sparsity lost about 0.3
test points against its dense source whatever the sparsity, as a fresh model trained on the
same images would differ from it. Distillation adds, to the loss on the labels, the
divergence from the dense model's softened outputs::

    J~ = CE(z_s, y) + w · T² · KL( softmax(z_t / T) || softmax(z_s / T) )

(z_s the student's logits, z_t the frozen teacher's on the same batch, T the temperature;
T² keeps the gradient scale of the soft term independent of T, as in Hinton et al.). The
student then keeps the teacher's decisions where the labels do not say otherwise, which is
what a budget measured against the dense model asks for.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SparsenetError
from .callbacks import Callback, TrainState

__all__ = ["Distill", "check_distill"]


def check_distill(weight: Any, temperature: Any) -> tuple[float, float]:
    """``(weight, temperature)`` as floats, or a :class:`SparsenetError` naming the bad one."""
    for name, v, low in (("weight", weight, 0.0), ("temperature", temperature, None)):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (low is not None and v < low) or (low is None and v <= 0):
            expected = "a finite number >= 0" if low is not None else "a finite number > 0"
            raise SparsenetError(f"bad distillation {name} {v!r}; expected {expected}")
    return float(weight), float(temperature)


class Distill(Callback):
    """Adds ``weight · T² · KL(teacher_T || student_T)`` to the training loss.

    Parameters
    ----------
    teacher : the model whose outputs the student follows; a frozen deep copy is kept (in
        eval mode, on the student's device), so later changes to ``teacher`` do not matter.
    weight : ``w`` above (0 switches distillation off; the labels' loss keeps weight 1).
    temperature : ``T`` above.

    Notes
    -----
    The teacher runs once per batch, under ``torch.no_grad``, on the batch the student sees
    (``state.x``: ``(B, ...)``); its logits ``(B, classes)`` must have the student's shape.
    """

    def __init__(self, teacher: nn.Module, weight: float = 1.0, temperature: float = 4.0) -> None:
        self.weight, self.temperature = check_distill(weight, temperature)
        self.teacher = copy.deepcopy(teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def on_train_begin(self, state: TrainState) -> None:
        self.teacher.to(state.config.device)

    def penalty(self, state: TrainState) -> torch.Tensor | None:
        if self.weight == 0 or state.x is None or state.logits is None:
            return None
        with torch.no_grad():
            target = self.teacher(state.x)
        if target.shape != state.logits.shape:
            raise SparsenetError(
                f"distillation: the teacher's outputs have shape {tuple(target.shape)}, the "
                f"student's {tuple(state.logits.shape)}; expected the same")
        t = self.temperature
        soft = F.log_softmax(target.float() / t, dim=1)
        log_p = F.log_softmax(state.logits.float() / t, dim=1)
        kl = F.kl_div(log_p, soft, reduction="batchmean", log_target=True)
        return self.weight * t * t * kl
