"""Wanda (Sun et al., 2023): prune by ``|W_ij| · ‖X_j‖₂``, compared within each output row.

``‖X_j‖₂`` is the norm of input ``j`` over the calibration samples (every patch of a
convolution), so the score is the size of weight ``ij``'s contribution to output ``i``.
No weights are updated. :meth:`Wanda.apply` prunes layer after layer, each measured on
the outputs of the already-pruned earlier layers; :meth:`Wanda.scores` gives the scores
of the model as it is (one pass, every layer at once) for rankings such as sensitivity.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SparsenetError
from .base import DEFAULT_CALIBRATION, Calibrated, CalibrationData
from .calibration import Stats, layer_view, record, sequential
from .mask import Target, apply_mask
from .patterns import Pattern, choose, choose_rows, matrix_view, split_count

__all__ = ["Wanda", "wanda_scores", "GROUPS"]

GROUPS = ("row", "layer")


def wanda_scores(target: Target, stats: Stats) -> torch.Tensor:
    """``|W_ij| · ‖X_j‖₂`` of the target's ``(rows, cols)`` view, as ``(rows, cols)``."""
    view = layer_view(target)
    w = matrix_view(target.value.detach())
    norms = stats.sq.sqrt().to(w.dtype)  # (blocks, cols)
    per_row = norms.repeat_interleave(view.rows // view.blocks, dim=0)  # (rows, cols)
    return w.abs() * per_row


class Wanda(Calibrated):
    """Pruning by weights and activations, no update.

    Parameters
    ----------
    data, calibration, batch_size : as :class:`~sparsenet.prune.base.Calibrated`.
    group : ``"row"`` (each output row loses the same share, the paper's choice) or
        ``"layer"`` (one ranking over the layer).
    """

    name = "wanda"

    def __init__(
        self,
        data: CalibrationData | None = None,
        calibration: int = DEFAULT_CALIBRATION,
        group: str = "row",
        batch_size: int = 256,
    ) -> None:
        super().__init__(data, calibration, batch_size)
        if group not in GROUPS:
            raise SparsenetError(f"bad wanda group {group!r}; expected one of {GROUPS}")
        self.group = group

    def scores(self, model: nn.Module, targets: list[Target]) -> list[torch.Tensor]:
        stats = record(model, targets, self.calibration_inputs(), full=False,
                       batch_size=self.batch_size)
        return [wanda_scores(t, s).reshape(t.value.shape) for t, s in zip(targets, stats, strict=True)]

    def apply(
        self,
        model: nn.Module,
        targets: list[Target],
        counts: list[int],
        pattern: Pattern | None = None,
    ) -> None:
        want = {id(t): c for t, c in zip(targets, counts, strict=True)}

        def step(t: Target, stats: Stats) -> None:
            sc = wanda_scores(t, stats)
            m = t.mask
            forced = None if m is None else ~matrix_view(m)
            if self.group == "row":
                quotas = torch.tensor(split_count(want[id(t)], [sc.shape[1]] * sc.shape[0]))
                prune = choose_rows(sc, quotas, pattern, forced)
            else:
                prune = choose(sc, want[id(t)], pattern, forced)
            apply_mask(t.module, (~prune).reshape(t.value.shape), t.tensor,
                       None if pattern is None else str(pattern))

        sequential(model, targets, self.calibration_inputs(), step, full=False,
                   batch_size=self.batch_size)
