"""OBD's Hessian diagonal for any graph: the exact Gauss–Newton diagonal, or Hutchinson's estimate.

LeCun's recursion (:mod:`sparsenet.prune.obd`) walks a chain of layers. Residual adds,
BatchNorm, attention and anything else a chain walk cannot follow get one of two
fall-backs, both over the *effective* tensors (through masks and other parametrisations)
of every trainable tensor, keyed ``"<module path>.<tensor>"``:

``gauss-newton``
    The exact diagonal of the Gauss–Newton (for cross-entropy: Fisher) matrix
    ``G = (1/N) Σ_n J_nᵀ H_n J_n``, J_n the Jacobian of sample n's outputs w.r.t. the
    weights, H_n the Hessian of its loss w.r.t. the outputs. H_n is factored as
    ``M_n M_nᵀ`` (cross-entropy: ``diag(p) − ppᵀ = (diag(√p) − p√pᵀ)(…)ᵀ``, since
    Σp = 1; MSE: ``(2/K) I``), so ``diag G = (1/N) Σ_n Σ_c (J_nᵀ m_nc)²``: one
    back-propagation per output column per sample (a sample's C columns batched with
    ``is_grads_batched``). Cost ≈ C back-propagations per sample, one sample at a time,
    against one batched back-propagation for a gradient pass (docs/prune.md has the
    measured ratio).
    It is the default fall-back because for piecewise-linear networks (ReLU, max-pool,
    average pooling, eval-mode BatchNorm, residual adds) the outputs are linear in each
    single weight (every weight sits in one layer, and the layers after it are linear
    for a fixed activation pattern), so ``∂²z/∂w_k² = 0`` and the Gauss–Newton diagonal
    *is* the exact Hessian diagonal. Elsewhere (attention's softmax, LayerNorm, GELU) it
    drops the ``Σ_c ∂E/∂z_c ∂²z_c/∂w_k²`` term, like LeCun's Levenberg–Marquardt form,
    and stays >= 0. Deterministic.

``hutchinson``
    ``diag H ≈ (1/k) Σ_j z_j ⊙ H z_j`` over ``k = probes`` Rademacher vectors z_j, each
    ``H z`` a Hessian-vector product by double back-propagation. Unbiased for the exact
    Hessian diagonal of any twice-differentiable graph; entry i has variance
    ``Σ_{j≠i} H_ij² / k``. Cost ≈ 2–3 back-propagations per probe per sample; it can be
    negative. Probes are drawn from ``seed`` (the same on every rank and every chunk).
    Attention runs on PyTorch's math kernel here (the fused kernels have no double
    backward).

Both run on :func:`plain_copy` (parametrisations baked in, so the tensors differentiated
are the effective ones). Parameter-free modules run as they are; the model is in eval mode (BatchNorm uses
its running statistics, dropout is off), so samples are independent.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils import parametrize

__all__ = [
    "GRAPH_FORMS",
    "effective_tensors",
    "plain_copy",
    "output_factor",
    "gauss_newton_chunk",
    "hutchinson_chunk",
]

GRAPH_FORMS = ("gauss-newton", "hutchinson")

def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every parametrisation baked into a plain Parameter.

    Differentiating the copy's parameters is differentiating the *effective* tensors of
    ``model`` (a masked weight, a codebook lookup) under the same names.
    """
    twin = copy.deepcopy(model)
    for m in list(twin.modules()):
        if not parametrize.is_parametrized(m):
            continue
        values = {
            name: getattr(m, name).detach().clone()
            for name in m.parametrizations  # type: ignore[union-attr]
        }
        # Not parametrize.remove_parametrizations: the deep copy shares its dynamically
        # made class with the original, and removal deletes properties from that class.
        m.__class__ = m.__class__.__bases__[0]
        del m._modules["parametrizations"]
        for name, value in values.items():
            m.register_parameter(name, nn.Parameter(value))
    return twin


def effective_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every floating-point trainable tensor by its effective name.

    Returns
    -------
    dict ``"<module path>.<tensor>"`` -> the tensor the forward uses: a plain parameter,
    or the parametrised value (``original * mask``...) under the name it replaces, so
    ``torch.func.functional_call`` with these keys bypasses the parametrisation. Tied
    parameters appear once, under their first name.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for path, m in model.named_modules():
        if "parametrizations" in path.split("."):
            continue
        prefix = f"{path}." if path else ""
        for name, p in m.named_parameters(recurse=False):
            if p.requires_grad and p.is_floating_point() and id(p) not in seen:
                seen.add(id(p))
                out[prefix + name] = p
        if parametrize.is_parametrized(m):
            for name in m.parametrizations:  # type: ignore[union-attr]
                value = getattr(m, name)
                if value.is_floating_point():
                    out[prefix + name] = value
    return out


def output_factor(z: torch.Tensor, loss: str) -> torch.Tensor:
    """``M`` with ``M Mᵀ`` = the Hessian of one sample's loss w.r.t. its outputs ``z`` (C,).

    ``ce``: ``diag(√p) − p √pᵀ`` (p = softmax z); ``mse``: ``√(2/C) I`` for the
    per-sample ``mean_c (z_c − t_c)²``. Returns (C, C); column c is one cotangent.
    """
    if loss == "ce":
        p = torch.softmax(z, dim=0)
        s = p.sqrt()
        return torch.diag(s) - p[:, None] * s[None, :]
    c = z.shape[0]
    return torch.eye(c, dtype=z.dtype, device=z.device) * (2.0 / c) ** 0.5


def gauss_newton_chunk(
    model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor, loss: str
) -> dict[str, torch.Tensor]:
    """``Σ_n Σ_c (J_nᵀ m_nc)²`` over the samples of ``x`` (B, ...), per tensor.

    One forward per sample, then its C cotangents ``m_nc`` go back together
    (``is_grads_batched``, a vmap over the backward only); measured 4× faster on a CPU
    than a vmap over the samples as well, whose per-sample convolution gradients become
    grouped convolutions. The model must be in eval mode (samples independent). Labels
    are not needed: for both losses the output Hessian depends on the outputs only.
    """
    names = list(tensors)
    leaves = [t.detach().requires_grad_() for t in tensors.values()]
    acc = [torch.zeros_like(v) for v in leaves]
    params = dict(zip(names, leaves, strict=True))
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        for n in range(len(x)):
            z = functional_call(model, params, (x[n : n + 1],)).reshape(-1)  # (C,)
            m = output_factor(z.detach(), loss)  # (C, C), columns are cotangents
            grads = torch.autograd.grad(
                z,
                leaves,
                grad_outputs=m.T.contiguous(),  # row c = cotangent c
                is_grads_batched=True,
                allow_unused=True,
                materialize_grads=True,
            )
            for a, g in zip(acc, grads, strict=True):
                a += (g * g).sum(0)  # g: (C, *shape)
    return dict(zip(names, acc, strict=True))


def _loss_sum(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Σ_n of the per-sample loss (cross-entropy, or ``mean_k (z − t)²`` as ``F.mse_loss``)."""
    if loss == "ce":
        return F.cross_entropy(z, y, reduction="sum")
    t = F.one_hot(y, z.shape[1]).to(z.dtype) if not y.is_floating_point() else y.to(z.dtype)
    return F.mse_loss(z, t, reduction="sum") / z[0].numel()


def _rademacher(shape: torch.Size, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    z = torch.randint(0, 2, shape, generator=gen).to(device=like.device, dtype=like.dtype)
    return 2 * z - 1


def hutchinson_chunk(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    probes: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """``(1/k) Σ_j z_j ⊙ H_chunk z_j`` for the *summed* loss over the chunk ``(x, y)``.

    Probe j is drawn from a generator seeded with ``(seed, j)`` alone, so every chunk (and
    every rank) uses the same k vectors and the chunk results add up to the estimate for
    the whole data set.
    """
    names = list(tensors)
    leaves = [t.detach().requires_grad_() for t in tensors.values()]
    # The fused CPU attention kernels have no double backward; the math kernel has.
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        z_out = functional_call(model, dict(zip(names, leaves, strict=True)), (x,))
        total = _loss_sum(z_out, y, loss)
        grads = torch.autograd.grad(
            total, leaves, create_graph=True, allow_unused=True, materialize_grads=True
        )
    live = [i for i, g in enumerate(grads) if g.requires_grad]  # others: zero curvature
    acc = [torch.zeros_like(v) for v in leaves]
    for j in range(probes):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + j)
        zs = [_rademacher(v.shape, gen, v) for v in leaves]
        if not live:
            continue
        hz = torch.autograd.grad(
            [grads[i] for i in live],
            [leaves[i] for i in live],
            grad_outputs=[zs[i] for i in live],
            retain_graph=j < probes - 1,
            allow_unused=True,
            materialize_grads=True,
        )
        for i, h in zip(live, hz, strict=True):
            acc[i] += zs[i] * h.detach()
    return {k: a / probes for k, a in zip(names, acc, strict=True)}
