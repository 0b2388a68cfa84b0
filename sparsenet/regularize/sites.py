"""Where penalties and metrics look: weight layers and activation sites, by module name.

A *weight layer* is a module holding a compressible ``weight`` of kind ``fc`` or ``conv``
in :mod:`sparsenet.layers` (``Linear``, ``Conv``/``ConvTranspose`` of any groups; its
effective weight, through any parametrisation such as a pruning mask). An *activation site* is the module whose output
is a layer's activations: an activation module (``nn.ReLU``, ``nn.Sigmoid``,
:class:`~sparsenet.regularize.activations.TruncatedSigmoid`...) named directly, or, when a
weight layer is named, the activation module that immediately follows it in its parent
``nn.Sequential`` (so ``fc1`` in LeNet-300-100 means the output of ``relu1``). A weight
layer with no activation after it (LeNet-5's convolutions) is its own site.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import SpecError
from ..layers import compressible_tensors, is_inside_parametrization

__all__ = [
    "WEIGHT_KINDS",
    "ACTIVATION_TYPES",
    "is_activation",
    "weight_layers",
    "activation_sites",
]

# Weight layers are the modules holding a compressible ``weight`` of these kinds in
# sparsenet.layers (Linear; Conv and ConvTranspose of any groups).
WEIGHT_KINDS = ("fc", "conv")
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardtanh,
    nn.Threshold,
)


def is_activation(module: nn.Module) -> bool:
    """True for torch's element-wise activations and this package's sparse activations."""
    return isinstance(module, ACTIVATION_TYPES) or getattr(module, "is_sparse_activation", False)


def _unknown(kind: str, bad: Iterable[str], known: Iterable[str]) -> SpecError:
    return SpecError(
        f"unknown {kind} {sorted(bad)}; expected names among {sorted(known) or '(none)'}"
    )


def weight_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """Weight layers of ``model`` by name, optionally restricted to ``layers``.

    Raises
    ------
    SpecError : a name in ``layers`` is not a weight layer of the model.
    """
    found = {
        t.module_path: t.module
        for t in compressible_tensors(model)
        if t.module_path and t.tensor == "weight" and t.kind in WEIGHT_KINDS
    }
    if layers is None:
        return found
    wanted = list(layers)
    bad = [n for n in wanted if n not in found]
    if bad:
        raise _unknown("weight layer(s)", bad, found)
    return {n: found[n] for n in wanted}


def _next_sibling(model: nn.Module, name: str) -> tuple[str, nn.Module] | None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not isinstance(parent, nn.Sequential):
        return None
    names = [n for n, _ in parent.named_children()]
    i = names.index(child)
    if i + 1 >= len(names):
        return None
    nxt = names[i + 1]
    return (f"{parent_name}.{nxt}" if parent_name else nxt), getattr(parent, nxt)


def activation_sites(
    model: nn.Module, layers: Iterable[str] | None = None
) -> dict[str, tuple[str, nn.Module]]:
    """Activation sites as ``{requested name: (site module name, site module)}``.

    With ``layers=None``: every activation module, keyed by the weight layer before it when
    there is one (``{"fc1": ("relu1", ReLU), ...}``), else by its own name.

    Raises
    ------
    SpecError : a name is neither an activation module nor a weight layer.
    """
    modules: dict[str, nn.Module] = dict(model.named_modules())
    if layers is None:
        out: dict[str, tuple[str, nn.Module]] = {}
        prev: dict[str, str] = {}
        for name in weight_layers(model):
            nxt = _next_sibling(model, name)
            if nxt is not None and is_activation(nxt[1]):
                prev[nxt[0]] = name
        for name, m in modules.items():
            if name and not is_inside_parametrization(name) and is_activation(m):
                out[prev.get(name) or name] = (name, m)
        return out
    wanted = list(layers)
    weights = weight_layers(model)
    bad = [
        n
        for n in wanted
        if n not in modules or not (is_activation(modules[n]) or n in weights)
    ]
    if bad:
        known = [
            n
            for n, m in modules.items()
            if n and not is_inside_parametrization(n) and (is_activation(m) or n in weights)
        ]
        raise _unknown("layer(s) for activations", bad, known)
    out = {}
    for n in wanted:
        m = modules[n]
        if n in weights:
            nxt = _next_sibling(model, n)
            out[n] = nxt if nxt is not None and is_activation(nxt[1]) else (n, m)
        else:
            out[n] = (n, m)
    return out
