"""The extension point of :func:`~sparsenet.training.fit`: :class:`Callback` and what it sees.

Pruning (re-masking), regularisation (extra loss terms), weight sharing (centroid
fine-tuning) and low-rank fine-tuning plug into the one loop through a :class:`Callback`
instead of copying the loop.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["Callback", "TrainState", "end_callbacks"]


@dataclass
class TrainState:
    """What callbacks see. Fields are updated in place as training runs."""

    model: nn.Module
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    step: int = 0
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    stop: bool = False


class Callback:
    """Hooks into :func:`fit`. Override what you need; every hook is optional.

    Order within one step: forward → ``penalty`` (summed into the loss) → backward →
    ``on_after_backward`` (gradients present) → optimizer step → ``on_step_end``.
    ``on_train_end`` runs whenever ``on_train_begin`` ran, also when training raises or is
    interrupted, so it is the place to remove hooks.
    ``state_dict``/``load_state_dict`` let a resumed run restore callback state.
    """

    def on_train_begin(self, state: TrainState) -> None: ...
    def on_epoch_begin(self, state: TrainState) -> None: ...
    def penalty(self, state: TrainState) -> torch.Tensor | None:
        return None

    def on_after_backward(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def end_callbacks(
    callbacks: Sequence[Callback], state: TrainState, failure: BaseException | None
) -> None:
    """``on_train_end`` of every callback, each even if an earlier one raises.

    Parameters
    ----------
    callbacks : the callbacks whose ``on_train_begin`` ran, in order.
    state : the training state.
    failure : the exception training is ending with, or ``None`` for a clean end. An
        error of ``on_train_end`` is then attached to it as a note (Python >= 3.11)
        instead of replacing it; after a clean end the first such error is raised once
        all callbacks have ended.
    """
    first: BaseException | None = None
    for cb in callbacks:
        try:
            cb.on_train_end(state)
        except Exception as exc:
            if failure is not None:
                if sys.version_info >= (3, 11):
                    failure.add_note(
                        f"on_train_end of {cb!r} also failed: {type(exc).__name__}: {exc}"
                    )
            elif first is None:
                first = exc
    if first is not None:
        raise first
