"""BatchNorm: recalibrate running statistics, and fold BN into the preceding Linear/Conv.

Pruning and weight sharing change the activations a BatchNorm layer sees, while its
running mean and variance still describe the dense network. :func:`recalibrate_bn`
recomputes them with one pass over training batches (nothing else changes).

:func:`fold_bn` removes a BatchNorm whose input is the output of a Linear/Conv used by it
alone: with ``s = γ / sqrt(running_var + ε)`` (one value per output channel)::

    W' = s · W        (row c of W, i.e. output channel c, times s_c)
    b' = s · (b − running_mean) + β

so ``layer'(x) == bn(layer(x))`` in eval mode, and the BatchNorm becomes a
:class:`FoldedBatchNorm` (an ``nn.Identity``). That is a registered module swap
(``transform_kind = "fold_bn"``), so checkpoints, ``--resume`` and ``.snn`` files rebuild
it, including the bias the fold created on a layer that had none. A pruned layer keeps
its :class:`~sparsenet.prune.Mask`: the scale goes into ``original`` (a row times a
constant keeps its zeros), so effective weight = ``(s · original) * mask = s · W``.

Pairs are found on the ``torch.fx`` graph (:func:`torch.fx.symbolic_trace`) of the model;
where the model cannot be traced, on the graphs of its traceable submodules (an
``nn.Sequential`` always is), which is sound because a layer's output can leave a
submodule only through that submodule's graph output, and fx records that as a use.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from .checkpoint import register_transform
from .errors import CheckpointError, SparsenetError

__all__ = [
    "FoldedBatchNorm",
    "BatchNormFolder",
    "fold_bn",
    "recalibrate_bn",
    "batchnorm_modules",
    "has_batchnorm",
]

FOLDABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def batchnorm_modules(model: nn.Module) -> dict[str, _BatchNorm]:
    """``{name: module}`` of every BatchNorm1d/2d/3d (any ``_BatchNorm``) in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm that tracks running statistics."""
    return any(m.track_running_stats for m in batchnorm_modules(model).values())


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
    batches: int = 50,
    batch_size: int = 128,
    seed: int = 0,
) -> int:
    """Recompute the running mean/variance of every BatchNorm of ``model`` from training data.

    The statistics are reset, then ``batches`` mini-batches of ``batch_size`` samples (a
    permutation seeded by ``seed``; fewer if the data is smaller) are forwarded without
    gradients, BatchNorm layers in train mode with cumulative averaging
    (``momentum=None``) and every other module in eval mode (dropout off). Each module's
    mode and each BatchNorm's momentum are restored afterwards; no parameter changes.

    Parameters
    ----------
    data : ``(x, y)`` or ``x``, with x of shape (N, ...).
    batches, batch_size : at most ``batches × batch_size`` samples are used.

    Returns
    -------
    The number of BatchNorm layers recalibrated (0: nothing to do, nothing run).
    """
    if batches < 1 or batch_size < 1:
        raise SparsenetError(
            f"bad recalibration batches={batches}, batch_size={batch_size}; expected both >= 1"
        )
    x = data[0] if isinstance(data, (tuple, list)) else data
    bns = [m for m in batchnorm_modules(model).values() if m.track_running_stats]
    if not bns or len(x) == 0:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta: dict[_BatchNorm, float | None] = {b: b.momentum for b in bns}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[: batches * batch_size]
    try:
        model.eval()
        for b in bns:
            b.reset_running_stats()
            b.momentum = None  # cumulative average over the batches below
            b.train()
        for start in range(0, len(idx), batch_size):
            model(x[idx[start : start + batch_size]].to(device))
    finally:
        for m, mode in modes.items():
            m.training = mode
        for b, mom in momenta.items():
            b.momentum = mom
    return len(bns)


class FoldedBatchNorm(nn.Identity):
    """What a BatchNorm becomes once folded into layer ``into`` (an identity).

    ``bias_added``: the fold created ``into.bias`` (the layer had none), so a rebuild
    from a bare architecture must create it again before the state dict is loaded.
    """

    transform_kind = "fold_bn"

    def __init__(self, into: str, bias_added: bool = False) -> None:
        super().__init__()
        self.into, self.bias_added = into, bias_added

    def spec(self) -> dict[str, Any]:
        return {"into": self.into, "bias_added": self.bias_added}

    def extra_repr(self) -> str:
        return f"into={self.into!r}" + (", bias_added=True" if self.bias_added else "")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@register_transform("fold_bn")
def _rebuild_fold(model: nn.Module, entry: dict[str, Any]) -> None:
    args = entry.get("args", {})
    into = args.get("into")
    try:
        layer = model.get_submodule(str(into))
    except AttributeError:
        raise CheckpointError(
            f"fold_bn on {entry.get('module')!r}: no layer {into!r} to hold the folded weights"
        ) from None
    if args.get("bias_added") and getattr(layer, "bias", None) is None:
        weight = cast(torch.Tensor, layer.weight)
        layer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype,
                                              device=weight.device))
    _replace(model, str(entry["module"]), FoldedBatchNorm(str(into), bool(args.get("bias_added"))))


def _trace_pairs(module: nn.Module, prefix: str, pairs: dict[str, str], why: dict[str, str],
                 shared: set[str]) -> None:
    """Find ``{bn name: layer name}`` in ``module``'s fx graph, or in its children's if it
    cannot be traced. ``why`` gets the reason for each BatchNorm seen but not paired."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure: look one level down
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, _BatchNorm):
                why.setdefault(full, f"its parent cannot be traced by torch.fx ({reason})")
            else:
                _trace_pairs(child, f"{full}.", pairs, why, shared)
        return
    modules = dict(module.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, _BatchNorm):
            continue
        name, src = f"{prefix}{node.target}", node.args[0] if node.args else None
        layer = modules.get(src.target) if isinstance(src, torch.fx.Node) and src.op == "call_module" else None
        if calls[node.target] > 1 or name in shared:
            why[name] = "it is used more than once"
        elif not isinstance(src, torch.fx.Node) or not isinstance(layer, FOLDABLE):
            why[name] = "its input is not the output of a Linear/Conv1d/2d/3d layer"
        elif calls[src.target] > 1 or len(src.users) != 1 or f"{prefix}{src.target}" in shared:
            why[name] = f"the output of {prefix}{src.target} is used by more than this BatchNorm"
        else:
            pairs[name] = f"{prefix}{src.target}"
            why.pop(name, None)


class BatchNormFolder:
    """Fold every foldable BatchNorm of a model into its preceding Linear/Conv (in place).

    Parameters
    ----------
    strict : raise :class:`~sparsenet.errors.SparsenetError` if any BatchNorm cannot be
        folded, instead of leaving it (and warning).

    After :meth:`fold`, ``folded`` is ``{bn name: layer name}`` and ``skipped`` is
    ``{bn name: reason}`` for BatchNorms left in place.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.folded: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def report(self) -> dict[str, Any]:
        """JSON facts: what was folded into what, what was not and why."""
        return {"folded": dict(self.folded), "skipped": dict(self.skipped)}

    def fold(self, model: nn.Module) -> nn.Module:
        bns = batchnorm_modules(model)
        self.folded, self.skipped = {}, {}
        if not bns:
            return model
        counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        shared = {n for n, m in model.named_modules() if counts[id(m)] > 1}
        pairs: dict[str, str] = {}
        why: dict[str, str] = {}
        _trace_pairs(model, "", pairs, why, shared)
        for name in bns:
            if name not in pairs:
                self.skipped[name] = why.get(name, "it is not called in the traced forward")
                continue
            reason = _fold_one(model, name, pairs[name])
            if reason is None:
                self.folded[name] = pairs[name]
            else:
                self.skipped[name] = reason
        if self.skipped and self.strict:
            name, reason = next(iter(self.skipped.items()))
            raise SparsenetError(f"cannot fold BatchNorm {name!r}: {reason}")
        return model


def _fold_one(model: nn.Module, bn_name: str, layer_name: str) -> str | None:
    """Fold BatchNorm ``bn_name`` into ``layer_name``; the reason when it cannot be done."""
    bn = cast(_BatchNorm, model.get_submodule(bn_name))
    layer = model.get_submodule(layer_name)
    out = int(cast(torch.Tensor, layer.weight).shape[0])
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return "it has no running statistics (track_running_stats=False)"
    if bn.num_features != out:
        return f"it has {bn.num_features} features but {layer_name} has {out} outputs"
    for tensor in ("weight", "bias"):
        if parametrize.is_parametrized(layer, tensor):
            kinds = [getattr(type(p), "transform_kind", type(p).__name__)
                     for p in layer.parametrizations[tensor]]  # type: ignore[union-attr,index]
            if tensor == "bias" or any(k != "mask" for k in kinds):
                return f"{layer_name}.{tensor} carries a {'/'.join(kinds)} parametrisation"
    mean, var = cast(torch.Tensor, bn.running_mean).double(), cast(torch.Tensor, bn.running_var)
    with torch.no_grad():
        var = var.double()
        scale = (bn.weight.double() if bn.weight is not None else torch.ones_like(var))
        scale = scale / torch.sqrt(var + bn.eps)
        shift = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
        w = cast(torch.Tensor, layer.parametrizations["weight"].original  # type: ignore[union-attr,index]
                 if parametrize.is_parametrized(layer, "weight") else layer.weight)
        w.copy_((w.double() * scale.view(-1, *[1] * (w.dim() - 1))).to(w.dtype))
        bias_added = layer.bias is None
        if bias_added:
            layer.bias = nn.Parameter(torch.zeros(out, dtype=w.dtype, device=w.device))
        b = cast(torch.Tensor, layer.bias)
        b.copy_(((b.double() - mean) * scale + shift).to(b.dtype))
    _replace(model, bn_name, FoldedBatchNorm(layer_name, bias_added))
    return None


def fold_bn(model: nn.Module, strict: bool = False,
            report: dict[str, Any] | None = None) -> nn.Module:
    """Fold BatchNorm layers into their preceding Linear/Conv layers; returns ``model``.

    The folded model's eval-mode outputs equal the original's (up to float rounding).
    BatchNorms that cannot be folded stay; they are listed in ``report["skipped"]`` with
    the reason (and warned about when no ``report`` dict is given). See
    :class:`BatchNormFolder`.
    """
    folder = BatchNormFolder(strict=strict)
    folder.fold(model)
    if report is not None:
        report.update(folder.report())
    elif folder.skipped:
        warnings.warn(
            "BatchNorm not folded: "
            + "; ".join(f"{k} ({v})" for k, v in folder.skipped.items()),
            stacklevel=2,
        )
    return model
