"""The Hessian diagonal of Optimal Brain Damage by second-order back-propagation.

LeCun, Denker & Solla (1990) back-propagate the diagonal second derivatives of the loss
the way back-propagation carries the gradient. For a unit ``a = f(y)`` feeding
``y' = W a + b``::

    ∂²E/∂y_i² = f'(y_i)² Σ_l W_li² ∂²E/∂y'_l²  +  f''(y_i) ∂E/∂a_i        (full form)
    ∂²E/∂y_i² = f'(y_i)² Σ_l W_li² ∂²E/∂y'_l²                             (Levenberg–Marquardt)
    h_kk      = ∂²E/∂y_i² · a_j²                for the weight W_ij,

and the saliency of weight ``k`` is ``½ h_kk w_k²``. Off-diagonal terms are dropped at
every layer, so the result is exact where they vanish (the last layer's weights; every
weight of a one-hidden-layer net under MSE) and LeCun's approximation elsewhere.

The walk runs over the model's chain of leaf modules (nested ``nn.Sequential`` is
flattened). Each rule is vectorised over the batch: a Linear layer is two matrix
products, a convolution reuses ``nn_grad.conv2d_weight``/``conv2d_input`` with the
squared input / squared kernel, so one pass costs about one gradient pass more.
Written by hand because no maintained library computes this recursion (BackPACK's
``DiagHessian`` is close but not a dependency here, and it is not LeCun's recursion).

Models the walk cannot follow (residual adds, BatchNorm, attention: anything that is not
a chain of the supported modules) get a fall-back from :mod:`sparsenet.prune.obd_graph`:
the exact Gauss–Newton diagonal (``form="gauss-newton"``, the default there; it equals the
exact Hessian diagonal for piecewise-linear nets) or Hutchinson's estimate of the exact
diagonal (``form="hutchinson"``, ``probes`` Rademacher vectors). ``form="auto"`` picks
``"lm"`` for a chain and ``"gauss-newton"`` otherwise; :func:`resolve_form` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as nn_grad

from .. import distributed as dist_
from ..errors import SparsenetError
from .obd_graph import (
    GRAPH_FORMS,
    effective_tensors,
    gauss_newton_chunk,
    hutchinson_chunk,
    plain_copy,
)

__all__ = ["hessian_diagonal", "module_chain", "resolve_form", "ELEMENTWISE", "LOSSES", "FORMS"]

RECURSION_FORMS = ("full", "lm")
FORMS = ("auto", *RECURSION_FORMS, *GRAPH_FORMS)
LOSSES = ("ce", "mse")

# Element-wise activations: module type -> fn(y, a) returning (f'(y), f''(y)) from the
# pre-activation y and the output a = f(y). Register more by adding to this dict.
ActRule = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ELEMENTWISE: dict[type[nn.Module], ActRule] = {
    nn.ReLU: lambda y, a: ((y > 0).to(y.dtype), torch.zeros_like(y)),
    nn.Tanh: lambda y, a: (1 - a * a, -2 * a * (1 - a * a)),
    nn.Sigmoid: lambda y, a: (a * (1 - a), a * (1 - a) * (1 - 2 * a)),
    nn.Identity: lambda y, a: (torch.ones_like(y), torch.zeros_like(y)),
    nn.Dropout: lambda y, a: (torch.ones_like(y), torch.zeros_like(y)),  # eval mode
}
_ROUTING = (nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d)
_SUPPORTED = (nn.Linear, nn.Conv2d, *ELEMENTWISE, *_ROUTING, *_AVGPOOL)


def module_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules of ``model`` in forward order, nested ``nn.Sequential`` flattened.

    Raises :class:`SparsenetError` naming the first module the recursion does not support.
    """

    def walk(prefix: str, m: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                yield from walk(f"{prefix}.{name}" if prefix else name, child)
        else:
            yield prefix, m

    chain = list(walk("", model))
    if not any(isinstance(m, (nn.Linear, nn.Conv2d)) for _, m in chain):
        raise SparsenetError("OBD: the model has no Linear or Conv2d layer")
    for name, m in chain:
        if not isinstance(m, _SUPPORTED) or (
            isinstance(m, nn.Conv2d) and m.padding_mode != "zeros"
        ):
            kinds = sorted({t.__name__ for t in _SUPPORTED})
            raise SparsenetError(
                f"OBD: module {name or '<model>'!r} of type {type(m).__name__} is not supported "
                f"by the second-order back-propagation; supported: {', '.join(kinds)} "
                "in an nn.Sequential chain"
            )
    return chain


def _output_derivatives(
    z: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ∂E/∂z and the diagonal ∂²E/∂z² of the *summed* per-sample loss.

    ``ce``: E = Σ_n CE(z_n, y_n); gradient p − onehot, diagonal p(1 − p) (the exact
    Hessian is diag(p) − ppᵀ; only its diagonal enters the recursion).
    ``mse``: E = Σ_n mean_k (z_nk − t_nk)², matching ``F.mse_loss`` per sample; integer
    labels become one-hot targets.
    """
    if loss == "ce":
        p = torch.softmax(z, dim=1)
        g = p.clone()
        g[torch.arange(len(y)), y] -= 1
        return g, p * (1 - p)
    t = F.one_hot(y, z.shape[1]).to(z.dtype) if not y.is_floating_point() else y.to(z.dtype)
    k = z[0].numel()
    return 2 * (z - t) / k, torch.full_like(z, 2.0 / k)


def _avgpool_weights(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The weight each output of an average pool gives each input of its window, (1, C, *out)."""
    ones = torch.ones_like(x[:1])
    kw: dict[str, Any] = dict(
        kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode
    )
    if isinstance(m, nn.AvgPool2d):
        count = F.avg_pool2d(ones, count_include_pad=True, divisor_override=1, **kw)
        return m(ones) / count
    ks: Any = m.kernel_size
    k = int(ks[0] if isinstance(ks, tuple) else ks)
    count = F.avg_pool1d(ones, count_include_pad=True, **kw) * k
    return m(ones) / count


@torch.no_grad()
def _batch(
    chain: list[tuple[str, nn.Module]],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    form: str,
    acc: dict[str, torch.Tensor],
) -> None:
    """Forward, then back-propagate (g, h) through ``chain``, adding into ``acc``."""
    full = form == "full"
    inputs: list[Any] = []
    a = x
    for _, m in chain:
        if isinstance(m, (*_ROUTING, *_AVGPOOL)):
            with torch.enable_grad():
                out, vjp = torch.func.vjp(m, a)[:2]
            inputs.append((a, vjp))
            a = out.detach()
        else:
            inputs.append(a)
            a = m(a)
    g, h = _output_derivatives(a, y, loss)
    # Nothing below the first weight layer needs second derivatives.
    stop = min(i for i, (_, m) in enumerate(chain) if isinstance(m, (nn.Linear, nn.Conv2d)))
    for i in range(len(chain) - 1, stop - 1, -1):
        name, m = chain[i]
        inp = inputs[i]
        first = i == stop
        if isinstance(m, nn.Linear):
            w = m.weight
            x2 = inp * inp  # (B, in)
            _add(acc, f"{name}.weight", h.reshape(-1, h.shape[-1]).T @ x2.reshape(-1, x2.shape[-1]))
            if m.bias is not None:
                _add(acc, f"{name}.bias", h.reshape(-1, h.shape[-1]).sum(0))
            if not first:
                h = h @ (w * w)
                g = g @ w if full else g
        elif isinstance(m, nn.Conv2d):
            w = m.weight
            kw: dict[str, Any] = dict(
                stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups
            )
            # Σ_n Σ_positions h_y · x² over each kernel tap: the weight-gradient conv of x², h.
            _add(acc, f"{name}.weight", nn_grad.conv2d_weight(inp * inp, w.shape, h, **kw))
            if m.bias is not None:
                _add(acc, f"{name}.bias", h.sum(dim=(0, 2, 3)))
            if not first:
                h = nn_grad.conv2d_input(inp.shape, w * w, h, **kw)
                g = nn_grad.conv2d_input(inp.shape, w, g, **kw) if full else g
        elif isinstance(m, tuple(ELEMENTWISE)):
            out = m(inp)
            d1, d2 = _rule(m)(inp, out)
            h = d1 * d1 * h + (d2 * g if full else 0)
            g = d1 * g if full else g
        elif isinstance(m, _AVGPOOL):
            x_in, vjp = inp
            (hx,) = vjp(h * _avgpool_weights(m, x_in))
            h = hx
            g = vjp(g)[0] if full else g
        else:  # routing: flatten, max-pool — a 0/1 linear map, so its square is itself
            _, vjp = inp
            h = vjp(h)[0]
            g = vjp(g)[0] if full else g


def _rule(m: nn.Module) -> ActRule:
    for cls in type(m).__mro__:
        if cls in ELEMENTWISE:
            return ELEMENTWISE[cls]
    raise KeyError(type(m).__name__)  # unreachable: module_chain checked the type


def _add(acc: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    if key in acc:
        acc[key] += value
    else:
        acc[key] = value.clone()


def resolve_form(model: nn.Module, form: str = "auto") -> str:
    """The form :func:`hessian_diagonal` uses for ``model``.

    ``"auto"`` is ``"lm"`` (LeCun's recursion) when :func:`module_chain` can walk the
    model and ``"gauss-newton"`` otherwise; any other form is returned as it is.
    """
    if form not in FORMS:
        raise SparsenetError(f"OBD: unknown form {form!r}; expected one of {FORMS}")
    if form != "auto":
        return form
    try:
        module_chain(model)
    except SparsenetError:
        return "gauss-newton"
    return "lm"


def hessian_diagonal(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    loss: str = "ce",
    form: str = "auto",
    batch_size: int = 1000,
    device: str = "cpu",
    probes: int = 32,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Diagonal of the Hessian of the mean loss w.r.t. the model's weights.

    Parameters
    ----------
    model : for ``"full"``/``"lm"`` an ``nn.Sequential`` chain (nested Sequentials
        allowed) of supported modules; any module for the graph forms. Parametrised
        (masked) layers use their effective weights.
    data : ``(x, y)``: x (N, ...) inputs, y (N,) int64 labels (or float targets for MSE).
    loss : ``"ce"`` (softmax cross-entropy on logits) or ``"mse"`` (``F.mse_loss``).
    form : ``"auto"`` (see :func:`resolve_form`), ``"lm"`` (Levenberg–Marquardt
        recursion, >= 0), ``"full"`` (recursion with the f'' · gradient terms),
        ``"gauss-newton"`` (exact Gauss–Newton diagonal, any graph, >= 0) or
        ``"hutchinson"`` (unbiased estimate of the exact diagonal, any graph).
    batch_size : samples per vectorised batch (Gauss–Newton runs them one at a time
        within it); the result is averaged over all N.
    probes : Rademacher probes of ``"hutchinson"`` (its error shrinks as 1/√probes).
    seed : seeds the probes of ``"hutchinson"``.

    Under ``torch.distributed`` (every rank passing the same ``data``) each rank walks its
    contiguous shard and the sums are ``all_reduce``d before dividing by N: every rank gets
    the single-process result up to float summation order.

    Returns
    -------
    dict ``"<module path>.<tensor>"`` -> tensor of that tensor's shape with ∂²E/∂w_k²
    (see ``form``), E the mean loss over ``data``. The recursion covers Linear/Conv2d
    weights and biases; the graph forms every trainable floating-point tensor (BatchNorm
    and LayerNorm affine, attention ``in_proj_weight``, embeddings...).
    """
    if loss not in LOSSES:
        raise SparsenetError(f"OBD: unknown loss {loss!r}; expected one of {LOSSES}")
    form = resolve_form(model, form)
    if not (isinstance(probes, int) and probes >= 1):
        raise SparsenetError(f"OBD: bad probes={probes!r}; expected an integer >= 1")
    x, y = data
    if len(x) == 0 or len(x) != len(y):
        raise SparsenetError(f"OBD: need a non-empty data set; got {len(x)} inputs, {len(y)} labels")
    chain = module_chain(model) if form in RECURSION_FORMS else []
    was_training = model.training
    model.eval()
    acc: dict[str, torch.Tensor] = {}
    n = len(x)
    sharded = dist_.is_distributed() and n >= dist_.world_size()  # every shard non-empty
    if sharded:
        lo, hi = dist_.shard_bounds(n)
        x, y = x[lo:hi], y[lo:hi]
    try:
        if form in RECURSION_FORMS:
            for s in range(0, len(x), batch_size):
                _batch(
                    chain,
                    x[s : s + batch_size].to(device),
                    y[s : s + batch_size].to(device),
                    loss,
                    form,
                    acc,
                )
        else:
            _graph(model, x, y, loss, form, batch_size, device, probes, seed, acc)
    finally:
        model.train(was_training)
    if sharded:
        dist_.all_reduce_dict(acc)
    return {k: v / n for k, v in acc.items()}


def _graph(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    form: str,
    batch_size: int,
    device: str,
    probes: int,
    seed: int,
    acc: dict[str, torch.Tensor],
) -> None:
    """Sum the Gauss–Newton or Hutchinson diagonal over ``(x, y)`` chunk by chunk into ``acc``."""
    with torch.no_grad():
        model = plain_copy(model)  # differentiate the effective (masked...) tensors
        tensors = effective_tensors(model)
        if not tensors:
            raise SparsenetError("OBD: the model has no trainable floating-point tensor")
        for k, t in tensors.items():  # every rank contributes every key, even with no samples
            acc[k] = torch.zeros_like(t)
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size].to(device), y[s : s + batch_size].to(device)
        if form == "gauss-newton":
            part = gauss_newton_chunk(model, tensors, xb, loss)
        else:
            part = hutchinson_chunk(model, tensors, xb, yb, loss, probes, seed)
        for k, v in part.items():
            acc[k] += v
