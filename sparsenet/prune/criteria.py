"""Pruning criteria: small classes with one hook, ``scores``, returning a score per weight.

The lowest scores are pruned. Positions already masked are pruned first whatever their
score (see :mod:`sparsenet.prune.oneshot`), so re-pruning never revives a weight.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError, SpecError
from .base import Calibrated, Criterion
from .mask import Target
from .obd import hessian_diagonal, resolve_form
from .sparsegpt import OBS, SparseGPT
from .wanda import Wanda

__all__ = [
    "Criterion",
    "Calibrated",
    "Magnitude",
    "Random",
    "OBD",
    "SparseGPT",
    "Wanda",
    "OBS",
    "CRITERIA",
    "CALIBRATED",
    "make_criterion",
    "DEFAULT_OBD_SAMPLES",
]

DEFAULT_OBD_SAMPLES = 10_000


class Magnitude(Criterion):
    """``|w|`` (Han et al., 2015)."""

    name = "magnitude"

    def scores(self, model: nn.Module, targets: list[Target]) -> list[torch.Tensor]:
        return [t.value.detach().abs() for t in targets]


class Random(Criterion):
    """Uniform random scores: the baseline every criterion must beat.

    Parameters
    ----------
    seed : seeds a private generator; each call draws fresh scores from it.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)

    def scores(self, model: nn.Module, targets: list[Target]) -> list[torch.Tensor]:
        return [torch.rand(t.value.shape, generator=self._gen).to(t.value.device) for t in targets]


class OBD(Criterion):
    """Optimal Brain Damage saliency ``½ h_kk w_k²`` (LeCun et al., 1990).

    Parameters
    ----------
    data : ``(x, y)`` over whose first ``samples`` the Hessian diagonal is averaged; may be
        left out and given later (:func:`make_criterion` with ``data``, or a pruning
        schedule, which passes its training data).
    samples : how many samples of ``data`` to use (default 10,000; ``None``: all).
    loss : ``"ce"`` or ``"mse"``.
    form : ``"auto"`` (LeCun's recursion ``"lm"`` for a chain, ``"gauss-newton"`` for
        any other graph), ``"lm"`` (Levenberg–Marquardt, >= 0, LeCun's choice),
        ``"full"``, ``"gauss-newton"`` or ``"hutchinson"``; see
        :func:`sparsenet.prune.obd.hessian_diagonal`.
    batch_size : samples per vectorised batch.
    probes, seed : Rademacher probes of ``"hutchinson"`` and their seed.

    After :meth:`scores`, ``hessian_`` holds the diagonal that was used and ``form_`` the
    form it was computed with (``"auto"`` resolved).
    """

    name = "obd"

    def __init__(
        self,
        data: tuple[torch.Tensor, torch.Tensor] | None = None,
        samples: int | None = DEFAULT_OBD_SAMPLES,
        loss: str = "ce",
        form: str = "auto",
        batch_size: int = 1000,
        probes: int = 32,
        seed: int = 0,
    ) -> None:
        if samples is not None and (
            isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
        ):
            raise SparsenetError(f"bad OBD samples {samples!r}; expected an integer >= 1 or None")
        self.data = data
        self.samples = samples
        self.loss = loss
        self.form = form
        self.batch_size = batch_size
        self.probes = probes
        self.seed = seed

    def hessian_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``samples`` of ``data``."""
        if self.data is None:
            raise SparsenetError("method 'obd' needs data (x, y) to average the Hessian over")
        x, y = self.data
        return (x, y) if self.samples is None else (x[: self.samples], y[: self.samples])

    def scores(self, model: nn.Module, targets: list[Target]) -> list[torch.Tensor]:
        device = next(model.parameters()).device.type
        self.form_ = resolve_form(model, self.form)
        self.hessian_ = hessian_diagonal(
            model, self.hessian_data(), loss=self.loss, form=self.form_, batch_size=self.batch_size,
            device=device, probes=self.probes, seed=self.seed,
        )
        out = []
        for t in targets:
            key = t.key
            if key not in self.hessian_:
                covers = (
                    "Linear/Conv2d weights and biases in the module chain"
                    if self.form_ in ("lm", "full")
                    else "trainable floating-point tensors"
                )
                raise SparsenetError(
                    f"OBD: no Hessian for {key!r} (form {self.form_!r} covers {covers}); "
                    f"got {sorted(self.hessian_)}"
                )
            w = t.value.detach()
            out.append(0.5 * self.hessian_[key].to(w.dtype) * w * w)
        return out


CRITERIA: dict[str, type[Criterion]] = {
    "magnitude": Magnitude,
    "random": Random,
    "obd": OBD,
    "sparsegpt": SparseGPT,
    "wanda": Wanda,
    "obs": OBS,
}
# Names whose criterion needs calibration inputs (layer after layer, forward hooks).
CALIBRATED = tuple(k for k, v in CRITERIA.items() if issubclass(v, Calibrated))


def _accepted(cls: type[Criterion]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "data", "seed"}


def make_criterion(
    method: str | Criterion,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    **options: Any,
) -> Criterion:
    """A criterion by name (see :data:`CRITERIA`) or the instance given.

    ``obd`` needs ``data`` (the Hessian's average over its first ``samples``); ``sparsegpt``,
    ``wanda`` and ``obs`` need it as calibration inputs (the first ``calibration`` samples).
    ``options`` are the criteria's settings (``samples``, ``loss``, ``form``, ``batch_size``,
    ``probes`` for OBD; ``calibration``, ``blocksize``, ``damp``, ``group`` for the
    calibrated ones); each criterion takes those it has and ignores the others' (so one call
    site serves every method), and a name no criterion has raises :class:`SpecError`.

    A :class:`Criterion` instance is returned as is, its own settings kept; one built
    without data (``OBD(form="lm")``, ``SparseGPT(calibration=512)``) gets ``data`` as a
    copy, so the caller's object is not changed.
    """
    if isinstance(method, Criterion):
        if data is not None and getattr(method, "data", False) is None:
            method = copy.copy(method)
            method.data = data  # type: ignore[attr-defined]
        return method
    if method not in CRITERIA:
        raise SpecError(f"unknown pruning method {method!r}; expected one of {sorted(CRITERIA)}")
    known = set().union(*(_accepted(c) for c in CRITERIA.values()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise SpecError(f"unknown pruning option(s) {unknown}; expected some of {sorted(known)}")
    cls = CRITERIA[method]
    mine = {k: v for k, v in options.items() if k in _accepted(cls) and v is not None}
    if method == "obd":
        if data is None:
            raise SparsenetError("method 'obd' needs data (x, y) to average the Hessian over")
        return OBD(data, **mine)  # an option given as None keeps the default
    if method in CALIBRATED:
        if data is None:
            raise SparsenetError(
                f"method {method!r} needs calibration data (training samples) to record "
                "layer inputs; pass data"
            )
        return cls(data, **mine)  # type: ignore[call-arg]
    if method == "random":
        return Random(seed)
    return Magnitude()
