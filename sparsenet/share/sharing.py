"""``share_weights``: cluster each selected layer's non-zero weights and install a codebook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SparsenetError
from ..layers import compressible_tensors, tensor_name
from ..renamed import renamed_argument
from ..training import TrainConfig, fit
from .bits import resolve_bits
from .codebook import SharedWeight, index_dtype, shared_layers
from .kmeans import INITS, KMeans1D

__all__ = ["share_weights", "share_tensor", "finetune"]

DEFAULT_WEIGHT_BITS = "conv=8,fc=5"  # Deep Compression's widths


def share_tensor(
    weight: torch.Tensor,
    bits: int,
    init: str = "linear",
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int | None = 0,
) -> SharedWeight:
    """A :class:`SharedWeight` for ``weight`` (any shape): k-means on its non-zero entries.

    Zeros (pruned weights) are left out of the clustering and stay exactly zero.
    Clustering runs in float64; the centroids are stored in ``weight``'s dtype.
    """
    w = weight.detach()
    keep = w != 0  # (shape) bool
    k = 2**bits
    centroids = torch.zeros(k, dtype=w.dtype)
    indices = torch.zeros(w.shape, dtype=index_dtype(k))
    values = w[keep].cpu().double().numpy()  # (nnz,)
    if values.size:
        km = KMeans1D(k, init=init, max_iter=max_iter, tol=tol, seed=seed).fit(values)
        centroids = torch.from_numpy(km.cluster_centers_).to(w.dtype)
        indices[keep.cpu()] = torch.from_numpy(km.labels_.astype(np.int64)).to(indices.dtype)
    return SharedWeight.from_values(centroids, indices, keep.cpu(), bits, init=init).to(w.device)


def share_weights(
    model: nn.Module,
    weight_bits: str | int | Mapping[str, int] | None = None,
    init: str = "linear",
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int | None = 0,
    *,
    bits: str | int | Mapping[str, int] | None = None,
) -> nn.Module:
    """Share the weights of each selected layer through a k = 2**weight_bits codebook, in place.

    Each layer's effective weight (after any parametrisation already on it, such as a
    pruning mask) is clustered over its non-zero entries with 1-D k-means, and a
    :class:`~sparsenet.share.codebook.SharedWeight` is appended to the tensor's
    parametrisations. Any compressible tensor (:mod:`sparsenet.layers`) can be shared:
    Linear, Conv (depthwise, transposed), Embedding and attention weights. Zeros stay zero and are not a cluster. Biases are not shared.

    Parameters
    ----------
    model : the network, changed in place.
    weight_bits : the shared-weight index width: ``"conv=8,fc=5"`` (by group, the
        default), ``"fc3=6"`` (by name), ``"blocks.*=4"`` (glob), a mix, an int (all) or a
        dict; see :func:`~sparsenet.share.bits.resolve_bits`. Layers not selected are left
        alone.
    init : ``"linear"``, ``"density"``, ``"random"``, ``"kmeans++"`` or ``"optimal"``.
    max_iter, tol : Lloyd stopping rule, see :class:`~sparsenet.share.kmeans.KMeans1D`.
    seed : for the random initialisations.
    bits : deprecated name of ``weight_bits`` (a DeprecationWarning).

    Returns
    -------
    ``model``.

    Raises
    ------
    SpecError
        On a bad ``bits`` spec. SparsenetError on an unknown ``init`` or a layer that is
        already shared (``bake`` it first).
    """
    spec = renamed_argument("share_weights", "weight_bits", weight_bits, "bits", bits)
    if init not in INITS:
        raise SparsenetError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    table = resolve_bits(model, spec if spec is not None else DEFAULT_WEIGHT_BITS)
    tensors = {t.name: t for t in compressible_tensors(model)}
    already = {tensor_name(name, tensor) for name, tensor, _m, _p in shared_layers(model)}
    for name in table:
        if name in already:
            raise SparsenetError(
                f"layer {name!r} is already weight-shared; share the unshared checkpoint "
                "(the one before `sparsenet share`) instead"
            )
    for name, b in table.items():
        t = tensors[name]
        with torch.no_grad():
            weight = torch.as_tensor(t.value).detach().clone()  # effective weight
        p = share_tensor(weight, b, init=init, max_iter=max_iter, tol=tol, seed=seed)
        parametrize.register_parametrization(t.module, t.tensor, p, unsafe=True)
    return model


def finetune(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    quiet: bool = True,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune a shared model (its centroids and the unshared parameters) with :func:`fit`.

    Each centroid's gradient is the sum of its members' gradients, thousands of terms for
    a large layer, so plain SGD needs a learning rate tied to the cluster sizes. Adam
    normalises the step per parameter, and ``lr=1e-3`` worked across 2-8 bits on the
    LeNets (see docs/share.md), so it is the default here.

    Returns
    -------
    the per-epoch history from :func:`~sparsenet.training.fit`.
    """
    cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        optimizer="adam",
        batch_size=batch_size,
        schedule="cosine",
        seed=seed,
        quiet=quiet,
    )
    return fit(model, train, cfg, val=val)
