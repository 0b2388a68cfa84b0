"""The shared-weight parametrisation: a layer's weight becomes ``centroids[indices]``.

``SharedWeight`` holds a codebook of k = 2**bits centroids (an ``nn.Parameter``), one
index per weight (a ``uint8`` buffer when k <= 256, else ``int16``) and a boolean ``keep``
buffer that marks the weights that were non-zero when the layer was shared. The
effective weight is ``where(keep, centroids[indices], 0)``: pruned positions are exactly
zero and belong to no cluster (their index is 0 and is never read). A mask buffer is used
rather than a sentinel index because a sentinel would need k + 1 index values, which does
not fit ``uint8`` at 8 bits.

Autograd does the Deep Compression update for free: the backward of the gather is a
scatter-add, so ``centroids.grad[j]`` is the sum of the gradients of the weights in
cluster j, and an optimizer step moves each centroid by that sum.

The parametrisation ignores its input. Registered after a pruning mask (``Mask`` then
``SharedWeight`` on the same tensor) the chain's input is the masked pre-sharing weight,
which :mod:`sparsenet.share.report` reads back as the reference for the quantisation
error; the ``original`` tensor gets no gradient while the layer is shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import register_parametrization
from ..errors import SparsenetError
from ..layers import MAX_BITS, MIN_BITS  # int16 indices hold at most 2**15 clusters

__all__ = ["SharedWeight", "index_dtype", "shared_layers", "bake"]


def index_dtype(k: int) -> torch.dtype:
    """``torch.uint8`` for k <= 256 clusters, else ``torch.int16`` (k <= 2**15)."""
    return torch.uint8 if k <= 256 else torch.int16


@register_parametrization
class SharedWeight(nn.Module):
    """Weight sharing as a parametrisation: ``W = where(keep, centroids[indices], 0)``.

    Parameters
    ----------
    shape : the weight's shape.
    bits : index width b; the codebook has k = 2**b centroids (1 <= b <= 15).
    dtype : the weight's floating dtype (the centroids' dtype).
    init : how the codebook was initialised (informational; shown by ``sparsenet info``).

    Attributes
    ----------
    centroids : nn.Parameter (k,), the shared values (any order; k-means leaves them sorted).
    indices : buffer of ``shape``, uint8 (k <= 256) or int16, the cluster of each weight.
    keep : bool buffer of ``shape``; False marks a pruned weight (exactly zero, no cluster).
    """

    transform_kind = "codebook"
    indices: torch.Tensor
    keep: torch.Tensor

    def __init__(
        self,
        shape: tuple[int, ...] | list[int],
        bits: int,
        dtype: torch.dtype = torch.float32,
        init: str = "linear",
    ):
        super().__init__()
        if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
            raise SparsenetError(f"bits={bits!r}; expected an integer in {MIN_BITS}..{MAX_BITS}")
        self.shape = tuple(int(s) for s in shape)
        self.bits = bits
        self.init = init
        k = 2**bits
        self.centroids = nn.Parameter(torch.zeros(k, dtype=dtype))
        self.register_buffer("indices", torch.zeros(self.shape, dtype=index_dtype(k)))
        self.register_buffer("keep", torch.ones(self.shape, dtype=torch.bool))

    @property
    def k(self) -> int:
        """Number of centroids, 2**bits."""
        return 2**self.bits

    @classmethod
    def from_values(
        cls,
        centroids: torch.Tensor,
        indices: torch.Tensor,
        keep: torch.Tensor,
        bits: int,
        init: str = "linear",
    ) -> SharedWeight:
        """Build from a codebook ``centroids`` (k,), ``indices`` (shape) int and ``keep`` (shape) bool."""
        p = cls(tuple(indices.shape), bits, dtype=centroids.dtype, init=init)
        if centroids.shape != (p.k,):
            raise SparsenetError(f"centroids of shape {tuple(centroids.shape)}; expected ({p.k},)")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= p.k):
            raise SparsenetError(f"indices outside [0, {p.k}) for {bits} bits")
        with torch.no_grad():
            p.centroids.copy_(centroids)
            p.indices.copy_(torch.where(keep, indices, torch.zeros_like(indices)))
            p.keep.copy_(keep)
        return p

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # X: the chain's input (pre-sharing weight), deliberately unused; see module docstring.
        flat = self.centroids.index_select(0, self.indices.reshape(-1).long())  # (n,)
        w = flat.view(self.shape)
        return torch.where(self.keep, w, torch.zeros((), dtype=w.dtype, device=w.device))

    def cluster_sizes(self) -> torch.Tensor:
        """Members per centroid, (k,) int64, counting kept weights only."""
        return torch.bincount(self.indices[self.keep].long(), minlength=self.k)

    def spec(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "bits": self.bits,
            "clusters": self.k,
            "used": int((self.cluster_sizes() > 0).sum()),
            "init": self.init,
            "dtype": str(self.centroids.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SharedWeight:
        dtype = getattr(torch, str(spec.get("dtype", "float32")), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise SparsenetError(f"codebook spec: bad dtype {spec.get('dtype')!r}")
        return cls(spec["shape"], int(spec["bits"]), dtype=dtype, init=str(spec.get("init", "")))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bits={self.bits}, init={self.init!r}"


def shared_layers(model: nn.Module) -> Iterator[tuple[str, str, nn.Module, SharedWeight]]:
    """Yield ``(module_name, tensor_name, module, SharedWeight)`` for each shared tensor."""
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor, plist in module.parametrizations.items():  # type: ignore[union-attr]
            for p in plist:
                if isinstance(p, SharedWeight):
                    yield name, tensor, module, p


def bake(model: nn.Module) -> nn.Module:
    """Write each shared tensor's effective value back as a plain weight, in place.

    The ``SharedWeight`` parametrisations are removed. Where one is the only
    parametrisation of its tensor, torch's ``remove_parametrizations`` hands the
    ``original`` Parameter back to the module with the shared values (same Parameter
    object). Where others remain (a pruning mask before it), only the codebook is removed
    and ``original`` is overwritten in place with the shared values, which the remaining
    chain (a mask) leaves unchanged; a remaining chain that would change them is an error.

    Returns
    -------
    the same ``model``.
    """
    for _name, tensor, module, p in list(shared_layers(model)):
        plist: Any = module.parametrizations[tensor]  # type: ignore[index, union-attr]
        with torch.no_grad():
            value = getattr(module, tensor).detach().clone()
        if len(plist) == 1:
            parametrize.remove_parametrizations(module, tensor, leave_parametrized=True)
            continue
        pos = next(i for i, q in enumerate(plist) if q is p)
        del plist[pos]
        with torch.no_grad():
            plist.original.copy_(value)
            if not torch.equal(getattr(module, tensor), value):
                raise SparsenetError(
                    f"{_name}.{tensor}: the parametrisations left after removing the codebook "
                    "change the shared values; remove them first"
                )
    return model
