"""Sparsity penalties λR(·) added to the training loss: on weights and on activations.

Both are :class:`sparsenet.training.Callback`\\ s whose ``penalty(state)`` returns the extra
term of J~ = J + λR, so ``fit`` adds it to the loss before ``backward``. With ``lam == 0``
they return ``None`` and register no hooks, which leaves training bit-identical to
training without them.

The closed forms (``w`` a weight tensor, ``z`` a batch of activations of shape (B, ...)):

=================  ==========================================  ===============================
penalty            R                                           ∂(λR)/∂x
=================  ==========================================  ===============================
``l1``             Σ|w|                                        λ·sign(w)  (0 at w = 0)
``l2``             ½Σw²  (so λ is SGD weight decay)            λ·w
``elastic``        αΣ|w| + ½(1−α)Σw²   (scikit-learn's form)   λ(α·sign(w) + (1−α)w)
``group``          Σ_g ‖w_g‖₂, g = output rows / filters       λ·w_g/‖w_g‖₂  (0 if w_g = 0)
``log1p`` (act.)   (1/B) Σ_b Σ_i log(1 + z_bi²)                λ·2z/(1 + z²)/B
``l1`` (act.)      (1/B) Σ_b Σ_i |z_bi|                        λ·sign(z)/B
``kl`` (act.)      Σ_i KL(ρ ‖ ρ̂_i), ρ̂_i = (1/B) Σ_b z_bi       λ(−ρ/ρ̂_i + (1−ρ)/(1−ρ̂_i))/B
=================  ==========================================  ===============================

KL(ρ‖ρ̂) = ρ log(ρ/ρ̂) + (1−ρ) log((1−ρ)/(1−ρ̂)) is the sparse-autoencoder target on the
mean activation; it needs activations in [0, 1] (sigmoid-like), and ρ̂ is clamped into
[1e-6, 1 − 1e-6].
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from ..errors import SpecError
from ..layers import out_major
from ..training import Callback, TrainState
from .sites import activation_sites, weight_layers

__all__ = [
    "WeightPenalty",
    "ActivationPenalty",
    "l1_norm",
    "l2_half",
    "elastic_net",
    "group_lasso",
    "log1p_penalty",
    "l1_activation",
    "kl_sparsity",
    "WEIGHT_KINDS",
    "ACTIVATION_KINDS",
]

WEIGHT_KINDS = ("l1", "l2", "elastic", "group")
ACTIVATION_KINDS = ("log1p", "l1", "kl")
_KL_EPS = 1e-6


def l1_norm(w: torch.Tensor) -> torch.Tensor:
    """Σ|w| over all entries."""
    return w.abs().sum()


def l2_half(w: torch.Tensor) -> torch.Tensor:
    """½Σw² over all entries."""
    return 0.5 * w.pow(2).sum()


def elastic_net(w: torch.Tensor, l1_ratio: float = 0.5) -> torch.Tensor:
    """αΣ|w| + ½(1−α)Σw² with α = ``l1_ratio``."""
    return l1_ratio * l1_norm(w) + (1.0 - l1_ratio) * l2_half(w)


def group_lasso(w: torch.Tensor, groups: str = "out") -> torch.Tensor:
    """Σ_g ‖w_g‖₂ with groups the output rows/filters (``"out"``) or input columns/channels.

    ``w`` has shape (out, in, *kernel). ``torch.linalg.vector_norm`` takes the subgradient 0
    at an all-zero group, so a removed neuron stays at 0 without NaNs.
    """
    if groups == "out":
        rows = w.reshape(w.shape[0], -1)  # (out, in·k)
    else:
        rows = w.transpose(0, 1).reshape(w.shape[1], -1)  # (in, out·k)
    return torch.linalg.vector_norm(rows, dim=1).sum()


def log1p_penalty(z: torch.Tensor) -> torch.Tensor:
    """The review's (1/B) Σ_b Σ_i log(1 + z_bi²) for z of shape (B, ...)."""
    return torch.log1p(z.pow(2)).sum() / z.shape[0]


def l1_activation(z: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_b Σ_i |z_bi| for z of shape (B, ...)."""
    return z.abs().sum() / z.shape[0]


def kl_sparsity(z: torch.Tensor, rho: float = 0.05) -> torch.Tensor:
    """Σ_i KL(ρ ‖ ρ̂_i) with ρ̂_i the batch mean of unit i; z of shape (B, ...) in [0, 1]."""
    rho_hat = z.reshape(z.shape[0], -1).mean(0).clamp(_KL_EPS, 1 - _KL_EPS)  # (units,)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def _check_lam(lam: float, who: str) -> float:
    lam = float(lam)
    if not (lam >= 0 and lam != float("inf")):
        raise SpecError(f"{who}: bad lam={lam!r}; expected a finite number >= 0")
    return lam


class WeightPenalty(Callback):
    """λR(W) on the (effective) weights of Linear/Conv layers, as a training callback.

    Parameters
    ----------
    kind : ``"l1"``, ``"l2"``, ``"elastic"`` or ``"group"`` (see the module table).
    lam : λ >= 0; 0 disables the penalty entirely.
    layers : weight-layer names to penalise (default: every Linear/Conv layer).
    include_bias : also penalise biases (for ``"group"`` with ``groups="out"`` bias i joins
        row i's group, so a whole neuron can reach zero). Default: weights only.
    l1_ratio : α of the elastic net.
    groups : ``"out"`` (output rows of Linear, filters of Conv) or ``"in"`` (input columns /
        channels), for ``"group"``.
    """

    def __init__(
        self,
        kind: str,
        lam: float,
        layers: Iterable[str] | None = None,
        include_bias: bool = False,
        l1_ratio: float = 0.5,
        groups: str = "out",
    ):
        if kind not in WEIGHT_KINDS:
            raise SpecError(f"WeightPenalty: unknown kind {kind!r}; expected one of {WEIGHT_KINDS}")
        if not 0.0 <= l1_ratio <= 1.0:
            raise SpecError(f"WeightPenalty: bad l1_ratio={l1_ratio!r}; expected in [0, 1]")
        if groups not in ("out", "in"):
            raise SpecError(f"WeightPenalty: bad groups={groups!r}; expected 'out' or 'in'")
        self.kind = kind
        self.lam = _check_lam(lam, "WeightPenalty")
        self.layers = list(layers) if layers is not None else None
        self.include_bias = include_bias
        self.l1_ratio = l1_ratio
        self.groups = groups
        self._modules: list[nn.Module] | None = None

    @property
    def name(self) -> str:
        return {"group": "group_lasso"}.get(self.kind, self.kind)

    def _term(self, m: nn.Module) -> torch.Tensor:
        w = cast(torch.Tensor, m.weight)  # effective weight, through any parametrisation
        b = getattr(m, "bias", None) if self.include_bias else None
        if self.kind == "group":
            w = out_major(m, w)  # (out, in/groups, *k), also for a transposed convolution
            if b is not None and self.groups == "out":
                rows = torch.cat([w.reshape(w.shape[0], -1), b.reshape(-1, 1)], dim=1)
                return group_lasso(rows, "out")
            return group_lasso(w, self.groups)
        fn = {"l1": l1_norm, "l2": l2_half}.get(self.kind)
        term = fn(w) if fn else elastic_net(w, self.l1_ratio)
        if b is not None:
            term = term + (fn(b) if fn else elastic_net(b, self.l1_ratio))
        return term

    def value(self, model: nn.Module) -> torch.Tensor:
        """λR(W) of ``model`` as a 0-d tensor (differentiable)."""
        modules = list(weight_layers(model, self.layers).values())
        return self._value(modules)

    def _value(self, modules: list[nn.Module]) -> torch.Tensor:
        return self.lam * torch.stack([self._term(m) for m in modules]).sum()

    def on_train_begin(self, state: TrainState) -> None:
        self._modules = list(weight_layers(state.model, self.layers).values())

    def penalty(self, state: TrainState) -> torch.Tensor | None:
        if self.lam == 0:
            return None
        if self._modules is None:
            self.on_train_begin(state)
        assert self._modules is not None
        return self._value(self._modules)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.lam and self._modules:
            with torch.no_grad():
                state.metrics[f"penalty_{self.name}"] = float(self._value(self._modules))

    def on_train_end(self, state: TrainState) -> None:
        self._modules = None

    def __repr__(self) -> str:
        return f"WeightPenalty(kind={self.kind!r}, lam={self.lam}, layers={self.layers})"


class ActivationPenalty(Callback):
    """λR(z) on the activations of chosen layers, captured by forward hooks in training mode.

    Parameters
    ----------
    kind : ``"log1p"`` (Σ log(1 + z²), the review's), ``"l1"`` or ``"kl"``.
    lam : λ >= 0; 0 registers no hooks and adds nothing.
    layers : activation modules or the weight layers they follow (``"fc1"`` means the
        output of the activation after fc1, see :mod:`sparsenet.regularize.sites`);
        default every activation module.
    rho : target mean activation of ``"kl"``, in (0, 1).

    The hooks store outputs only while the module is in training mode, so validation passes
    cost nothing. Outside :func:`~sparsenet.training.fit`, call :meth:`attach`, run the
    forward pass, take :meth:`value` and :meth:`detach`.
    """

    def __init__(
        self,
        kind: str,
        lam: float,
        layers: Iterable[str] | None = None,
        rho: float = 0.05,
    ):
        if kind not in ACTIVATION_KINDS:
            raise SpecError(
                f"ActivationPenalty: unknown kind {kind!r}; expected one of {ACTIVATION_KINDS}"
            )
        if not 0.0 < rho < 1.0:
            raise SpecError(f"ActivationPenalty: bad rho={rho!r}; expected in (0, 1)")
        self.kind = kind
        self.lam = _check_lam(lam, "ActivationPenalty")
        self.layers = list(layers) if layers is not None else None
        self.rho = rho
        self._captured: dict[str, list[torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._last: torch.Tensor | None = None

    def attach(self, model: nn.Module) -> ActivationPenalty:
        """Register the forward hooks on ``model`` (replacing any previous ones)."""
        self.detach()
        for requested, (_site, module) in activation_sites(model, self.layers).items():
            store = self._captured.setdefault(requested, [])

            def hook(mod: nn.Module, _inp: Any, out: torch.Tensor, store: list = store) -> None:
                if mod.training:
                    store.append(out)

            self._handles.append(module.register_forward_hook(hook))
        return self

    def detach(self) -> None:
        """Remove the hooks and drop captured activations."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._captured = {}

    def _term(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "log1p":
            return log1p_penalty(z)
        if self.kind == "l1":
            return l1_activation(z)
        return kl_sparsity(z, self.rho)

    def value(self) -> torch.Tensor | None:
        """λR of the activations captured since the last call (then forgotten)."""
        terms = [self._term(z) for outs in self._captured.values() for z in outs]
        for outs in self._captured.values():
            outs.clear()
        if not terms:
            return None
        return self.lam * torch.stack(terms).sum()

    def on_train_begin(self, state: TrainState) -> None:
        if self.lam > 0:
            self.attach(state.model)

    def penalty(self, state: TrainState) -> torch.Tensor | None:
        if self.lam == 0:
            return None
        v = self.value()
        if v is not None:
            self._last = v.detach()  # read once per epoch, not per step
        return v

    def on_epoch_end(self, state: TrainState) -> None:
        if self._last is not None:
            state.metrics[f"penalty_act_{self.kind}"] = float(self._last)

    def on_train_end(self, state: TrainState) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"ActivationPenalty(kind={self.kind!r}, lam={self.lam}, layers={self.layers})"
