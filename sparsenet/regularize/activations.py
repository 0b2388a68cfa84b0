"""Activations that are sparse by construction, and swapping them into a model.

Both classes are module swaps that checkpoints rebuild: they set ``transform_kind =
"activation"`` and ``spec()``, and the rebuild registered here puts a fresh instance back at
the recorded module name (they hold no tensors, so the state dict is unchanged).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..checkpoint import register_transform
from ..errors import SpecError
from .sites import activation_sites, is_activation

__all__ = [
    "TruncatedSigmoid",
    "ShiftedReLU",
    "ACTIVATIONS",
    "activation_from_spec",
    "replace_activations",
]


def _check_tau(tau: float, low: float, high: float, what: str) -> float:
    tau = float(tau)
    if not (math.isfinite(tau) and low <= tau < high):
        raise SpecError(f"{what}: bad threshold tau={tau!r}; expected a number in [{low}, {high})")
    return tau


class TruncatedSigmoid(nn.Module):
    r"""The review's truncated activation :math:`y = \mathrm{Tr}[\sigma(x)]`, element-wise.

    .. math::

        y = \begin{cases} \sigma(x) & \sigma(x) \ge \tau \\ 0 & \sigma(x) < \tau \end{cases}
        \qquad \sigma(x) = 1 / (1 + e^{-x})

    so every output is either exactly 0 or at least ``tau``; ``tau = 0`` is the plain
    sigmoid. Equivalently the cut sits at :math:`x_\tau = \log(\tau / (1 - \tau))`, but the
    comparison is made on :math:`\sigma(x)` itself so the zero/non-zero decision matches
    the definition bit for bit.

    Gradient: :math:`\partial y/\partial x = \sigma(x)(1 - \sigma(x))` where
    :math:`\sigma(x) \ge \tau` and exactly 0 where :math:`\sigma(x) < \tau`. At the cut
    :math:`y` jumps from 0 to :math:`\tau`; that jump contributes nothing (no Dirac term),
    which is the same convention as ReLU's kink: a truncated unit receives no gradient,
    like a ReLU unit with negative input, and is revived only through other units'
    effect on earlier layers. Shapes: any ``(*)`` → same ``(*)``.

    Parameters
    ----------
    tau : threshold in [0, 1).
    """

    transform_kind = "activation"
    is_sparse_activation = True
    name = "truncated-sigmoid"

    def __init__(self, tau: float = 0.1):
        super().__init__()
        self.tau = _check_tau(tau, 0.0, 1.0, self.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        # masked_fill's backward zeroes the gradient where the output was filled.
        return s.masked_fill(s < self.tau, 0.0)

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, "tau": self.tau}

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class ShiftedReLU(nn.Module):
    r"""A ReLU whose zero region extends up to ``tau`` (``tau >= 0``), element-wise.

    ``mode="threshold"`` (the thresholded ReLU of Konda et al., 2015):
    :math:`y = x \cdot 1[x > \tau]`, gradient 1 above the cut and 0 below; the output
    jumps from 0 to :math:`\tau` at the cut and the jump contributes no gradient.
    ``mode="shift"``: :math:`y = \max(0, x - \tau)`, continuous, gradient
    :math:`1[x > \tau]`. Both give exact zeros for :math:`x \le \tau`; ``tau = 0`` is ReLU.
    """

    transform_kind = "activation"
    is_sparse_activation = True
    MODES = {"threshold": "thresholded-relu", "shift": "shifted-relu"}

    def __init__(self, tau: float = 0.0, mode: str = "threshold"):
        super().__init__()
        if mode not in self.MODES:
            raise SpecError(f"ShiftedReLU: bad mode {mode!r}; expected 'threshold' or 'shift'")
        self.mode = mode
        self.tau = _check_tau(tau, 0.0, math.inf, self.MODES[mode])

    @property
    def name(self) -> str:
        return self.MODES[self.mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "shift":
            return torch.relu(x - self.tau)
        return x.masked_fill(x <= self.tau, 0.0)

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, "tau": self.tau}

    def extra_repr(self) -> str:
        return f"tau={self.tau}, mode={self.mode!r}"


ACTIVATIONS: dict[str, Callable[[float], nn.Module]] = {
    "truncated-sigmoid": TruncatedSigmoid,
    "thresholded-relu": lambda tau: ShiftedReLU(tau, mode="threshold"),
    "shifted-relu": lambda tau: ShiftedReLU(tau, mode="shift"),
}


def activation_from_spec(spec: dict[str, Any]) -> nn.Module:
    """A fresh activation from its ``spec()``: ``{"type": "truncated-sigmoid", "tau": 0.1}``."""
    kind = spec.get("type")
    if kind not in ACTIVATIONS:
        raise SpecError(f"unknown activation {kind!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[kind](float(spec.get("tau", 0.0)))


@register_transform("activation")
def _rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
    model.set_submodule(entry["module"], activation_from_spec(entry["args"]))


def replace_activations(
    model: nn.Module,
    activation: str | nn.Module | Callable[[], nn.Module],
    layers: Iterable[str] | None = None,
) -> nn.Module:
    """Swap activation modules of ``model`` in place for sparse ones; returns ``model``.

    Parameters
    ----------
    model : any model whose activations are modules (``nn.ReLU()``, not ``F.relu``).
    activation : a spec string ``"KIND:TAU[@LAYER,...]"`` (see
        :func:`sparsenet.regularize.spec.parse_activation`), a module (deep-copied for each
        site) or a zero-argument factory.
    layers : activation modules (``"relu1"``) or the weight layers they follow (``"fc1"``);
        default every activation module. Overrides ``@LAYER`` in a spec string.

    Raises
    ------
    SpecError : bad spec, unknown layer, or a named layer not followed by an activation.
    """
    if isinstance(activation, str):
        from .spec import parse_activation

        parsed = parse_activation(activation)
        spec_dict = {"type": parsed.kind, "tau": parsed.tau}
        factory: Callable[[], nn.Module] = lambda: activation_from_spec(spec_dict)  # noqa: E731
        layers = layers if layers is not None else parsed.layers
    elif isinstance(activation, nn.Module):
        template = activation
        factory = lambda: copy.deepcopy(template)  # noqa: E731
    else:
        factory = activation
    sites = activation_sites(model, layers)
    for requested, (_site, module) in sites.items():
        if not is_activation(module):
            raise SpecError(
                f"replace_activations: {requested!r} is not followed by an activation module "
                "to replace; name an activation module or a layer followed by one"
            )
    for site, _ in sites.values():
        model.set_submodule(site, factory())
    return model
