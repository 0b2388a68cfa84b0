"""Pruning masks as parametrisations: effective tensor = original * mask.

A :class:`Mask` is registered with ``torch.nn.utils.parametrize`` on any tensor of a
module (a Linear/Conv weight, a bias, any named parameter). Because the mask sits in the
forward computation, the gradient reaching ``original`` is multiplied by the mask, and
whatever momentum or weight decay later does to ``original`` at a pruned position, the
effective tensor there stays exactly zero. :func:`bake` makes it permanent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import register_parametrization
from ..errors import SpecError
from ..layers import GROUPS, LayerTensor, compressible_tensors, layer_kind, match, tensor_name

__all__ = [
    "Mask",
    "Target",
    "apply_mask",
    "get_mask",
    "prunable_targets",
    "resolve_targets",
    "bake",
    "sparsity_report",
]

@register_parametrization
class Mask(nn.Module):
    """``forward(X) = X * mask`` with a boolean buffer ``mask`` of ``X``'s shape.

    Parameters
    ----------
    mask : bool tensor, the shape of the parametrised tensor; ``False`` = pruned.
    pattern : the structure the mask obeys, ``"2:4"`` (see :mod:`sparsenet.prune.patterns`),
        or ``None`` for unstructured. Recorded in the spec only when set, so unstructured
        masks keep their spec bytes and older checkpoints load unchanged.
    """

    transform_kind = "mask"
    mask: torch.Tensor
    _factor: torch.Tensor

    def __init__(self, mask: torch.Tensor, pattern: str | None = None) -> None:
        super().__init__()
        self.pattern = pattern
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())
        # Multiplying by a bool tensor converts it on every call (4x slower than a float
        # product, measured); keep a float copy, not saved, refreshed whenever `mask`
        # changes in place (its version counter moves: &=, load_state_dict's copy_).
        self.register_buffer("_factor", self.mask.to(torch.float32), persistent=False)
        self._seen = (id(self.mask), self.mask._version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._seen != (id(self.mask), self.mask._version) or self._factor.device != x.device:
            with torch.no_grad():
                self._factor = self.mask.to(device=x.device, dtype=self._factor.dtype)
            self._seen = (id(self.mask), self.mask._version)
        f = self._factor if self._factor.dtype == x.dtype else self._factor.to(x.dtype)
        return x * f

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": list(self.mask.shape)}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Mask:
        pattern = spec.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise SpecError(f"bad mask pattern {pattern!r} in a checkpoint; expected a string like '2:4'")
        return cls(torch.ones(tuple(spec["shape"]), dtype=torch.bool), pattern)

    def extra_repr(self) -> str:
        n = self.mask.numel()
        pat = f", pattern={self.pattern}" if self.pattern else ""
        return f"shape={tuple(self.mask.shape)}, pruned={n - int(self.mask.sum())}/{n}{pat}"


class Target(LayerTensor):
    """One prunable tensor: a :class:`~sparsenet.layers.LayerTensor` that knows its mask.

    ``name`` is the module's path for its weight (``"fc1"``) and ``"path.tensor"`` for any
    other tensor (``"fc1.bias"``, ``"attn.in_proj_weight"``).
    """

    @classmethod
    def of(cls, t: LayerTensor) -> Target:
        return cls(t.name, t.module_path, t.tensor, t.kind, t.module)

    @property
    def mask(self) -> torch.Tensor | None:
        return get_mask(self.module, self.tensor)


def _masks_on(module: nn.Module, tensor: str) -> list[Mask]:
    if not parametrize.is_parametrized(module, tensor):
        return []
    plist = module.parametrizations[tensor]  # type: ignore[index,union-attr]
    return [p for p in plist if isinstance(p, Mask)]


def get_mask(module: nn.Module, tensor: str = "weight") -> torch.Tensor | None:
    """The combined boolean mask on ``module.<tensor>``, or ``None`` if it has none."""
    masks = _masks_on(module, tensor)
    if not masks:
        return None
    out: torch.Tensor = masks[0].mask
    for m in masks[1:]:
        out = out & m.mask
    return out


@torch.no_grad()
def apply_mask(
    module: nn.Module, mask: torch.Tensor, tensor: str = "weight", pattern: str | None = None
) -> Mask:
    """Mask ``module.<tensor>``; an existing mask is combined (logical and), never revived.

    ``pattern`` (``"2:4"``) is recorded on the mask; combining keeps an earlier one when
    none is given (a logical and never breaks an N:M pattern).

    The stored ``original`` is zeroed at the pruned positions too, so a later :func:`bake`
    or an inspection of the raw parameter shows the same zeros.

    Returns the :class:`Mask` parametrisation now on the tensor.
    """
    current = getattr(module, tensor)
    if tuple(mask.shape) != tuple(current.shape):
        raise SpecError(
            f"mask of shape {tuple(mask.shape)} for {type(module).__name__}.{tensor} of shape "
            f"{tuple(current.shape)}; expected equal shapes"
        )
    mask = mask.to(device=current.device, dtype=torch.bool)
    existing = _masks_on(module, tensor)
    if existing:
        p = existing[0]
        p.mask &= mask
        if pattern is not None:
            p.pattern = pattern
    else:
        p = Mask(mask, pattern)
        parametrize.register_parametrization(module, tensor, p, unsafe=True)
    plist: Any = module.parametrizations[tensor]  # type: ignore[index,union-attr]
    if plist[0] is p:  # the mask acts directly on `original`: zero it there too
        plist.original.mul_(p.mask)
    return p


def prunable_targets(model: nn.Module) -> list[Target]:
    """Every compressible tensor (:func:`sparsenet.layers.compressible_tensors`), in module order."""
    return [Target.of(t) for t in compressible_tensors(model)]


def resolve_targets(model: nn.Module, names: list[str] | None = None) -> list[Target]:
    """Targets by spec key: a group (``fc``, ``conv``, ``embedding``, ``attention``,
    ``all``), a name (``"fc1"``: its weight), a glob (``"blocks.*.attn.*"``) or any other
    named tensor (``"fc1.bias"``).

    ``None`` means :func:`prunable_targets`. Unknown names raise :class:`SpecError`
    listing the prunable layers. Each tensor is listed once, in the order of ``names``
    (groups and globs in module order).
    """
    targets = prunable_targets(model)
    if names is None:
        return targets
    modules = dict(model.named_modules())
    out: dict[str, Target] = {}
    for name in names:
        found = match(targets, name)
        if found or name in GROUPS:
            out.update((t.name, Target.of(t)) for t in found if t.name not in out)
            continue
        if name in modules and isinstance(getattr(modules[name], "weight", None), torch.Tensor):
            path, tensor = name, "weight"  # a module outside the vocabulary (a norm layer)
        else:
            path, _, tensor = name.rpartition(".")
        mod = modules.get(path) if path else model
        if mod is not None and isinstance(getattr(mod, tensor, None), torch.Tensor):
            kind = layer_kind(mod) or "other"
            t = Target(tensor_name(path, tensor), path, tensor, kind, mod)
            out.setdefault(t.name, t)
            continue
        known = [t.name for t in targets]
        raise SpecError(
            f"unknown layer {name!r}; expected one of {known}, a group (fc, conv, embedding, "
            "attention, all), a glob or LAYER.TENSOR"
        )
    return list(out.values())


def bake(model: nn.Module) -> nn.Module:
    """Make pruning permanent: drop every mask, leaving ``original * mask`` as a plain tensor.

    The same ``nn.Parameter`` object that the layer held before pruning becomes its tensor
    again (``parametrize.remove_parametrizations(..., leave_parametrized=True)`` copies the
    value into ``original`` with ``set_``), so optimizers holding it stay valid. Tensors
    that also carry non-mask parametrisations (a codebook, say) are left as they are.
    Baked zeros are no longer protected from training.
    """
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for tensor in list(module.parametrizations.keys()):  # type: ignore[union-attr,operator]
            plist = module.parametrizations[tensor]  # type: ignore[index,union-attr]
            if all(isinstance(p, Mask) for p in plist):
                parametrize.remove_parametrizations(module, tensor, leave_parametrized=True)
    return model


@torch.no_grad()
def sparsity_report(model: nn.Module, targets: list[Target] | None = None) -> dict[str, Any]:
    """Per-layer and global sparsity of the effective tensors.

    Returns
    -------
    dict with ``layers`` (list of ``name``, ``shape``, ``size``, ``zeros``, ``sparsity``,
    ``masked`` — entries pruned by a mask, ``None`` when unmasked), and global ``size``,
    ``zeros``, ``sparsity`` and ``compression`` (size / non-zeros).
    """
    targets = prunable_targets(model) if targets is None else targets
    layers = []
    size = zeros = 0
    for t in targets:
        v = t.value
        z = int((v == 0).sum())
        m = t.mask
        layers.append(
            {
                "name": t.name,
                "shape": list(v.shape),
                "size": v.numel(),
                "zeros": z,
                "sparsity": z / max(v.numel(), 1),
                "masked": None if m is None else int((~m).sum()),
            }
        )
        size += v.numel()
        zeros += z
    nonzero = size - zeros
    return {
        "layers": layers,
        "size": size,
        "zeros": zeros,
        "sparsity": zeros / max(size, 1),
        "compression": size / nonzero if nonzero else float("inf"),
    }
