"""Layer inputs for the calibrated criteria: forward hooks, Gram matrices, layer after layer.

SparseGPT, OBS and Wanda need, for each pruned weight seen as a ``(rows, cols)`` matrix
(:func:`sparsenet.prune.patterns.matrix_view`), the inputs ``X`` (``cols × n``) that
multiply it: ``W X`` is the layer's linear map. A :class:`LayerView` says how to get
``X`` from what the module receives in its forward call:

- ``Linear``: the input, leading dimensions flattened into samples.
- ``Conv1d/2d/3d``: the input padded as the layer pads it and unfolded into patches
  (``(in/groups · prod(k))`` columns, one sample per output position); with ``groups`` the
  rows of each group see their own channels, so each group is a block of its own.
- ``MultiheadAttention.in_proj_weight``: the query, key and value inputs for the three
  row blocks of the packed projection (one Gram matrix when self-attention passes the
  same tensor three times).

Only ``H = X Xᵀ`` (per block, summed over samples, float64 on CPU) is kept, never ``X``.
:func:`record` measures several layers in one pass (the dense model); :func:`sequential`
measures one layer at a time in forward order, after the earlier ones were pruned and
reconstructed, as SparseGPT does, stopping each forward pass at the measured layer.
To support a new layer type, add a :class:`LayerView` to :func:`layer_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SparsenetError
from .mask import Target

__all__ = ["LayerView", "Stats", "layer_view", "raw_tensor", "record", "sequential", "forward_order"]


def raw_tensor(module: nn.Module, tensor: str) -> torch.Tensor:
    """The stored tensor behind ``module.<tensor>`` (``original`` when parametrised)."""
    if parametrize.is_parametrized(module, tensor):
        return module.parametrizations[tensor].original  # type: ignore[index,union-attr,no-any-return]
    return getattr(module, tensor)  # type: ignore[no-any-return]


@dataclass
class Stats:
    """What the criteria know of a layer's inputs: ``gram`` ``(blocks, cols, cols)`` = Σ x xᵀ
    (``None`` when only the diagonal was asked for), ``sq`` ``(blocks, cols)`` = Σ x², and
    the number of samples ``n`` (rows of ``X``; patches for a convolution)."""

    gram: torch.Tensor | None
    sq: torch.Tensor
    n: int


class LayerView:
    """How a tensor is a matrix and where its inputs come from.

    ``blocks`` is the number of row blocks with their own inputs (``rows`` divisible by it);
    :meth:`inputs` maps a forward call's ``(args, kwargs)`` to one ``(n, cols)`` tensor per
    block (``None`` entries repeat the previous block's input).
    """

    blocks = 1

    def __init__(self, target: Target) -> None:
        self.target = target
        w = target.value
        self.rows = int(w.shape[0])
        self.cols = w.numel() // max(self.rows, 1)

    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor | None]:
        raise NotImplementedError


class LinearView(LayerView):
    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor | None]:
        x = args[0] if args else kwargs["input"]
        return [x.reshape(-1, x.shape[-1])]


class ConvView(LayerView):
    """A convolution as a matrix product over unfolded patches (any spatial rank, groups)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        m: Any = target.module
        self.blocks = int(m.groups)

    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor | None]:
        m: Any = self.target.module
        x = args[0] if args else kwargs["input"]
        d = len(m.kernel_size)
        if x.dim() == d + 1:  # unbatched
            x = x.unsqueeze(0)
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        x = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
        for i in range(d):  # (B, C, *out, *k) after the loop
            k, s, dil = m.kernel_size[i], m.stride[i], m.dilation[i]
            x = x.unfold(2 + i, (k - 1) * dil + 1, s)
            if dil > 1:
                x = x[..., ::dil]
        b, c = x.shape[:2]
        out_dims = list(range(2, 2 + d))
        k_dims = list(range(2 + d, 2 + 2 * d))
        x = x.permute(0, *out_dims, 1, *k_dims)  # (B, *out, C, *k)
        x = x.reshape(-1, self.blocks, self.cols)  # (B·L, groups, C/groups · prod(k))
        return [x[:, g] for g in range(self.blocks)]


class InProjView(LayerView):
    """``MultiheadAttention.in_proj_weight`` ``(3E, E)``: rows of q, k, v see query, key, value."""

    blocks = 3

    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor | None]:
        names = ("query", "key", "value")
        xs = [args[i] if i < len(args) else kwargs[n] for i, n in enumerate(names)]
        out: list[torch.Tensor | None] = []
        for i, x in enumerate(xs):
            same = i > 0 and x is xs[i - 1]
            out.append(None if same else x.reshape(-1, x.shape[-1]))
        return out


def layer_view(target: Target) -> LayerView:
    """The :class:`LayerView` of a target, or :class:`SparsenetError` naming what is supported."""
    m = target.module
    if target.tensor == "weight" and isinstance(m, nn.Linear):
        return LinearView(target)
    if target.tensor == "weight" and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return ConvView(target)
    if target.tensor == "in_proj_weight" and isinstance(m, nn.MultiheadAttention):
        return InProjView(target)
    raise SparsenetError(
        f"calibrated pruning cannot see the inputs of {target.key!r} ({type(m).__name__}."
        f"{target.tensor}); supported: Linear/Conv1d/2d/3d weights and "
        "MultiheadAttention.in_proj_weight (prune others with magnitude)"
    )


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the measured layer has run."""


class _Recorder:
    def __init__(self, view: LayerView, full: bool, dtype: torch.dtype) -> None:
        self.view, self.full, self.dtype = view, full, dtype
        self.gram: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None
        self.n = 0
        self.calls = 0

    def add(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        v = self.view
        xs = v.inputs(args, kwargs)
        dev = next(x for x in xs if x is not None).device
        if self.sq is None:
            self.sq = torch.zeros(v.blocks, v.cols, dtype=self.dtype, device=dev)
            if self.full:
                self.gram = torch.zeros(v.blocks, v.cols, v.cols, dtype=self.dtype, device=dev)
        prev: torch.Tensor | None = None
        for b, x in enumerate(xs):
            x = prev if x is None else x.detach().to(self.dtype)
            assert x is not None
            prev = x
            self.sq[b] += (x * x).sum(0)
            if self.gram is not None:
                self.gram[b] += x.T @ x
            if b == 0:
                self.n += int(x.shape[0])
        self.calls += 1

    def stats(self) -> Stats:
        assert self.sq is not None
        return Stats(self.gram, self.sq, self.n)


def _accum_dtype(device: torch.device) -> torch.dtype:
    return torch.float64 if device.type == "cpu" else torch.float32


def _batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def forward_order(model: nn.Module, targets: list[Target], x: torch.Tensor) -> list[Target]:
    """``targets`` sorted by when their module first runs in ``model(x[:1])``.

    Raises :class:`SparsenetError` naming a target whose module never runs by itself
    (``MultiheadAttention.out_proj``, whose weight the attention uses directly).
    """
    first: dict[int, int] = {}
    handles = []
    for m in {id(t.module): t.module for t in targets}.values():
        def hook(mod: nn.Module, args: Any, _id: int = id(m)) -> None:
            first.setdefault(_id, len(first))
        handles.append(m.register_forward_pre_hook(hook))
    was = model.training
    model.eval()
    try:
        model(x[:1].to(_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    missing = [t.key for t in targets if id(t.module) not in first]
    if missing:
        raise SparsenetError(
            f"calibrated pruning needs each layer's inputs, but {missing} never ran as a module "
            "in the forward pass (e.g. MultiheadAttention.out_proj); prune them with magnitude "
            "or leave them out of the layers"
        )
    return sorted(targets, key=lambda t: first[id(t.module)])


@torch.no_grad()
def record(
    model: nn.Module,
    targets: list[Target],
    x: torch.Tensor,
    *,
    full: bool = True,
    batch_size: int = 256,
    stop_after: Target | None = None,
) -> list[Stats]:
    """Input statistics of ``targets`` over the calibration inputs ``x`` (model in eval mode).

    ``full=False`` keeps only the diagonal ``sq`` (Wanda). ``stop_after`` ends each forward
    pass once that target's module has run (the rest of the model is not needed).
    """
    views = [layer_view(t) for t in targets]
    dev = _device(model)
    recs = [_Recorder(v, full, _accum_dtype(dev)) for v in views]
    handles = []
    for rec in recs:
        stop = stop_after is not None and rec.view.target.module is stop_after.module

        def hook(mod: nn.Module, args: Any, kwargs: Any, _r: _Recorder = rec, _s: bool = stop) -> None:
            _r.add(args, kwargs)
            if _s:
                raise _Stop

        handles.append(rec.view.target.module.register_forward_pre_hook(hook, with_kwargs=True))
    was = model.training
    model.eval()
    try:
        for xb in _batches(x, batch_size):
            try:
                model(xb.to(dev))
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    for rec in recs:
        if rec.calls == 0:
            raise SparsenetError(f"layer {rec.view.target.key!r} did not run during calibration")
    return [r.stats() for r in recs]


def sequential(
    model: nn.Module,
    targets: list[Target],
    x: torch.Tensor,
    step: Callable[[Target, Stats], None],
    *,
    full: bool = True,
    batch_size: int = 256,
) -> None:
    """For each target in forward order: measure its inputs in the model as it is *now*
    (earlier targets already pruned by ``step``), then call ``step(target, stats)``.

    Targets of one module (an attention's packed projection and another of its tensors)
    are measured one at a time as well.
    """
    for t in forward_order(model, targets, x):
        (stats,) = record(model, [t], x, full=full, batch_size=batch_size, stop_after=t)
        step(t, stats)
