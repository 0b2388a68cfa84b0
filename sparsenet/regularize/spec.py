"""Parsing the CLI's regularisation specs into plain values.

Grammar (whitespace around parts is ignored)::

    weight penalty     LAMBDA[@LAYER,...]                      --l1 1e-5@fc1,fc2
    activation penalty KIND:LAMBDA[:RHO][@LAYER,...]           --act-penalty log1p:1e-4@fc1,fc2
                       KIND in log1p | l1 | kl (RHO only for kl, default 0.05)
    activation         KIND:TAU[@LAYER,...]                    --activation truncated-sigmoid:0.1
                       KIND in truncated-sigmoid | thresholded-relu | shifted-relu

Every malformed spec raises :class:`~sparsenet.errors.SpecError` with one line naming the
bad text and the expected form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import SpecError
from ..training import Callback

__all__ = [
    "WeightPenaltySpec",
    "ActPenaltySpec",
    "ActivationSpec",
    "parse_weight_penalty",
    "parse_act_penalty",
    "parse_activation",
    "callbacks_from_specs",
    "WEIGHT_FORM",
    "ACT_PENALTY_FORM",
    "ACTIVATION_FORM",
]

ACT_KINDS = ("log1p", "l1", "kl")
ACTIVATION_KINDS = ("truncated-sigmoid", "thresholded-relu", "shifted-relu")
WEIGHT_FORM = "LAMBDA[@LAYER,...] with LAMBDA a number >= 0, e.g. 1e-5@fc1,fc2"
ACT_PENALTY_FORM = (
    "KIND:LAMBDA[:RHO][@LAYER,...] with KIND one of log1p, l1, kl (RHO in (0, 1), kl only), "
    "e.g. log1p:1e-4@fc1,fc2"
)
ACTIVATION_FORM = (
    "KIND:TAU[@LAYER,...] with KIND one of truncated-sigmoid, thresholded-relu, shifted-relu, "
    "e.g. truncated-sigmoid:0.1"
)


@dataclass(frozen=True)
class WeightPenaltySpec:
    lam: float
    layers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ActPenaltySpec:
    kind: str
    lam: float
    rho: float | None = None
    layers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ActivationSpec:
    kind: str
    tau: float
    layers: tuple[str, ...] | None = None


def _bad(text: str, form: str, why: str = "") -> SpecError:
    return SpecError(f"bad spec {text!r}{': ' + why if why else ''}; expected {form}")


def _split_layers(text: str, form: str) -> tuple[str, tuple[str, ...] | None]:
    head, at, tail = text.partition("@")
    if not at:
        return head.strip(), None
    layers = tuple(part.strip() for part in tail.split(","))
    if not layers or any(not name for name in layers):
        raise _bad(text, form, "empty layer name after '@'")
    return head.strip(), layers


def _number(value: str, text: str, form: str, what: str, low: float, high: float) -> float:
    try:
        v = float(value)
    except ValueError:
        raise _bad(text, form, f"{what} {value.strip()!r} is not a number") from None
    if not (math.isfinite(v) and low <= v < high):
        raise _bad(text, form, f"{what} {v!r} is out of range")
    return v


def parse_weight_penalty(text: str) -> WeightPenaltySpec:
    """``"1e-5@fc1,fc2"`` → ``WeightPenaltySpec(1e-5, ("fc1", "fc2"))``."""
    head, layers = _split_layers(text, WEIGHT_FORM)
    if not head:
        raise _bad(text, WEIGHT_FORM, "missing LAMBDA")
    return WeightPenaltySpec(_number(head, text, WEIGHT_FORM, "LAMBDA", 0.0, math.inf), layers)


def parse_act_penalty(text: str) -> ActPenaltySpec:
    """``"log1p:1e-4@fc1,fc2"`` → ``ActPenaltySpec("log1p", 1e-4, None, ("fc1", "fc2"))``."""
    head, layers = _split_layers(text, ACT_PENALTY_FORM)
    parts = [p.strip() for p in head.split(":")]
    kind = parts[0].lower()
    if kind not in ACT_KINDS:
        raise _bad(text, ACT_PENALTY_FORM, f"unknown KIND {parts[0]!r}")
    if len(parts) < 2 or len(parts) > (3 if kind == "kl" else 2):
        raise _bad(text, ACT_PENALTY_FORM, "wrong number of ':' fields")
    lam = _number(parts[1], text, ACT_PENALTY_FORM, "LAMBDA", 0.0, math.inf)
    rho = None
    if kind == "kl":
        rho = (
            _number(parts[2], text, ACT_PENALTY_FORM, "RHO", 0.0, 1.0) if len(parts) == 3 else 0.05
        )
        if rho <= 0:
            raise _bad(text, ACT_PENALTY_FORM, "RHO must be > 0")
    return ActPenaltySpec(kind, lam, rho, layers)


def parse_activation(text: str) -> ActivationSpec:
    """``"truncated-sigmoid:0.1"`` → ``ActivationSpec("truncated-sigmoid", 0.1, None)``."""
    head, layers = _split_layers(text, ACTIVATION_FORM)
    parts = [p.strip() for p in head.split(":")]
    kind = parts[0].lower()
    if kind not in ACTIVATION_KINDS:
        raise _bad(text, ACTIVATION_FORM, f"unknown KIND {parts[0]!r}")
    if len(parts) != 2:
        raise _bad(text, ACTIVATION_FORM, "expected exactly one ':' between KIND and TAU")
    high = 1.0 if kind == "truncated-sigmoid" else math.inf
    return ActivationSpec(kind, _number(parts[1], text, ACTIVATION_FORM, "TAU", 0.0, high), layers)


def callbacks_from_specs(
    model: nn.Module,
    l1: str | None = None,
    l2: str | None = None,
    group_lasso: str | None = None,
    act_penalties: Sequence[str] = (),
    include_bias: bool = False,
) -> tuple[list[Callback], dict[str, Any]]:
    """Penalty callbacks for ``model`` from CLI spec strings, with layer names checked now.

    ``l1`` and ``l2`` together are the elastic net (two independent terms, so each keeps its
    own λ and layers). Returns ``(callbacks, description)``, the description being a
    JSON-able record for the checkpoint's metadata.

    Raises
    ------
    SpecError : a malformed spec or a layer name the model does not have.
    """
    from .penalties import ActivationPenalty, WeightPenalty
    from .sites import activation_sites, weight_layers

    callbacks: list[Callback] = []
    record: dict[str, Any] = {}
    for kind, text in (("l1", l1), ("l2", l2), ("group", group_lasso)):
        if text is None:
            continue
        ws = parse_weight_penalty(text)
        weight_layers(model, ws.layers)  # validates names
        callbacks.append(WeightPenalty(kind, ws.lam, ws.layers, include_bias=include_bias))
        record[kind] = {
            "lam": ws.lam,
            "layers": list(ws.layers) if ws.layers else None,
            "include_bias": include_bias,
        }
    acts = []
    for text in act_penalties:
        aps = parse_act_penalty(text)
        activation_sites(model, aps.layers)
        callbacks.append(ActivationPenalty(aps.kind, aps.lam, aps.layers, rho=aps.rho or 0.05))
        acts.append(
            {
                "kind": aps.kind,
                "lam": aps.lam,
                "rho": aps.rho,
                "layers": list(aps.layers) if aps.layers else None,
            }
        )
    if acts:
        record["activation_penalties"] = acts
    return callbacks, record
