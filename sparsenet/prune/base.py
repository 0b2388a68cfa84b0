"""The two kinds of pruning criterion.

A :class:`Criterion` scores weights; the lowest are pruned (magnitude, random, OBD, and
Wanda on the dense model). A :class:`Calibrated` criterion instead prunes each layer
itself, layer after layer on recorded inputs, and may rewrite the weights it keeps
(SparseGPT and OBS reconstruct the layer's output; Wanda only masks): its hook is
:meth:`Calibrated.apply`, given exactly how many entries of each target to prune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import SparsenetError

if TYPE_CHECKING:
    from .mask import Target
    from .patterns import Pattern

__all__ = ["Criterion", "Calibrated", "DEFAULT_CALIBRATION"]

DEFAULT_CALIBRATION = 1024

CalibrationData = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class Criterion:
    """Scores each weight of each target; the lowest are pruned first."""

    name = "criterion"

    def scores(self, model: nn.Module, targets: list[Target]) -> list[torch.Tensor]:
        """One tensor per target, of that target's shape."""
        raise NotImplementedError


class Calibrated(Criterion):
    """A criterion that prunes layer by layer on ``calibration`` recorded samples.

    Parameters
    ----------
    data : calibration inputs ``x``, or ``(x, y)`` (labels unused); the first
        ``calibration`` samples are used.
    calibration : number of samples (default 1,024).
    batch_size : samples per forward pass while recording.
    """

    name = "calibrated"

    def __init__(
        self,
        data: CalibrationData | None = None,
        calibration: int = DEFAULT_CALIBRATION,
        batch_size: int = 256,
    ) -> None:
        if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
            raise SparsenetError(f"bad calibration size {calibration!r}; expected an integer >= 1")
        self.data = data
        self.calibration = calibration
        self.batch_size = batch_size

    def calibration_inputs(self) -> torch.Tensor:
        """The first ``calibration`` input samples of ``data``."""
        if self.data is None:
            raise SparsenetError(
                f"method {self.name!r} needs calibration data (training inputs); pass data"
            )
        x = self.data[0] if isinstance(self.data, (tuple, list)) else self.data
        return x[: self.calibration]

    def apply(
        self,
        model: nn.Module,
        targets: list[Target],
        counts: list[int],
        pattern: Pattern | None = None,
    ) -> None:
        """Prune ``counts[i]`` entries of ``targets[i]`` (already-masked ones included)."""
        raise NotImplementedError
