"""Runnable models from ``.snn`` files: ordinary dense layers, or sparse layers that compute
straight from the compressed representation.

``runtime="sparse"`` turns every Linear / Conv2d layer of density <= 50 % into :class:`SparseLinear` / :class:`SparseConv2d`, which hold a torch CSR matrix built from
the decoded gaps and codebook (centroid lookup per non-zero): the dense weight is never
materialised, not even while loading (the architecture is first built on the ``meta``
device). ``runtime="dense"`` decodes every weight into ordinary ``nn.Linear``/``nn.Conv2d``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import build_architecture
from .coding.container import SnnFile, read_snn
from .errors import CorruptFileError, SparsenetError

__all__ = ["RUNTIMES", "SparseLinear", "SparseConv2d", "build_model_from_snn", "load_snn"]

RUNTIMES = ("dense", "sparse")
# The sparse runtime keeps a layer dense above this density (CSR then costs more than it saves).
SPARSE_MAX_DENSITY = 0.5


def _csr(
    crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=size, check_invariants=False)


class _CSRMatmul(nn.Module):
    """Holds a CSR weight and multiplies it with a dense matrix.

    Inference on CPU without autograd goes through ``scipy.sparse`` (about 3x less call
    overhead than ``torch.sparse.mm`` at batch 1, same speed at batch 64; see
    benchmarks/bench_coding.py); anything needing gradients or another device uses torch's
    CSR kernels. Both read the same ``values`` / index buffers: no dense copy is made.
    """

    crow_indices: torch.Tensor
    col_indices: torch.Tensor
    values: torch.Tensor

    def _set_csr(
        self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
    ) -> None:
        import scipy.sparse as sp

        self.register_buffer("crow_indices", crow)
        self.register_buffer("col_indices", col)
        self.register_buffer("values", values)
        self._w = _csr(crow, col, values, shape)
        self._sp = sp.csr_matrix(
            (values.numpy(), col.numpy(), crow.numpy()), shape=shape, copy=False
        )

    @staticmethod
    def _numpy_ok(m: torch.Tensor) -> bool:
        return (
            m.device.type == "cpu"
            and m.dtype == torch.float32
            and not (torch.is_grad_enabled() and m.requires_grad)
        )

    def _matmul(self, m: torch.Tensor) -> torch.Tensor:
        """``W @ m`` for ``m`` of shape (K, N); returns (out, N)."""
        if self._numpy_ok(m):
            return torch.from_numpy(self._sp @ m.detach().numpy())
        return torch.sparse.mm(self._w, m)


class SparseLinear(_CSRMatmul):
    """``y = x W^T + b`` with ``W`` a CSR matrix ``(out_features, in_features)``.

    Buffers ``crow_indices`` (out+1,), ``col_indices`` (nnz,), ``values`` (nnz,) float32.
    """

    bias: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        crow: torch.Tensor,
        col: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._set_csr(crow, col, values, (out_features, in_features))
        self.register_buffer("bias", bias)

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and self._numpy_ok(x):  # the common inference case, all in numpy
            y = self._sp @ x.detach().numpy().T  # (out, B)
            if self.bias is not None:
                y += self.bias.numpy()[:, None]
            return torch.from_numpy(y).T  # (B, out)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (B, in)
        y = self._matmul(x2.T).T  # (B, out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}"


class SparseConv2d(_CSRMatmul):
    """2-D convolution as CSR ``(out, in*kh*kw)`` times the unfolded input (im2col)."""

    bias: torch.Tensor | None

    def __init__(
        self,
        conv: nn.Conv2d,
        crow: torch.Tensor,
        col: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size: tuple[int, int] = tuple(conv.kernel_size)  # type: ignore[assignment]
        self.stride: tuple[int, int] = tuple(conv.stride)  # type: ignore[assignment]
        self.padding: tuple[int, int] = tuple(conv.padding)  # type: ignore[assignment]
        self.dilation: tuple[int, int] = tuple(conv.dilation)  # type: ignore[assignment]
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._set_csr(crow, col, values, (self.out_channels, k))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, K, L)
        oh = (
            h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1
        ) // self.stride[0] + 1
        ow = (
            w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1
        ) // self.stride[1] + 1
        k, L = cols.shape[1], cols.shape[2]
        flat = cols.permute(1, 0, 2).reshape(k, b * L)  # (K, B*L)
        y = (
            torch.sparse.mm(self._w, flat).reshape(self.out_channels, b, L).permute(1, 0, 2)
        )  # (B, out, L)
        if self.bias is not None:
            y = y + self.bias[None, :, None]
        return y.reshape(b, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, nnz={int(self.values.numel())}"
        )


def _sparse_module(original: nn.Module, lc: Any, bias: torch.Tensor | None) -> nn.Module | None:
    crow, col, val = (torch.from_numpy(a) for a in lc.csr())
    if type(original) is nn.Linear:
        return SparseLinear(original.in_features, original.out_features, crow, col, val, bias)
    if (
        type(original) is nn.Conv2d
        and original.groups == 1
        and original.padding_mode == "zeros"
        and isinstance(original.padding, tuple)
    ):
        return SparseConv2d(original, crow, col, val, bias)
    return None


def build_model_from_snn(
    snn: SnnFile, runtime: str = "dense", model: nn.Module | None = None, source: str = "snn"
) -> nn.Module:
    """Build the runnable module for a parsed file (see :func:`load_snn`)."""
    if runtime not in RUNTIMES:
        raise SparsenetError(f"runtime={runtime!r}; expected one of {RUNTIMES}")
    arch, transforms = snn.header.get("arch"), snn.header.get("transforms") or []
    if model is None:
        if arch is None:
            raise CorruptFileError(
                f"{source}: no architecture recorded (a custom model saved with "
                "record_arch=False); pass model= to load into"
            )
        try:  # on the meta device: hostile sizes allocate nothing
            with torch.device("meta"):
                model = build_architecture(arch, transforms, source)
        except Exception as exc:  # noqa: BLE001 - any failure means the header is unusable
            msg = str(exc).removeprefix(f"{source}: ")
            raise CorruptFileError(f"{source}: architecture cannot be built ({msg[:200]})") from None
    declared = {lc.name: lc.shape for lc in snn.layers} | {
        k: tuple(v.shape) for k, v in snn.tensors.items()
    }
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if declared != expected:
        diff = sorted(set(declared.items()) ^ set(expected.items()))[:3]
        raise CorruptFileError(
            f"{source}: stored tensors do not match the architecture (e.g. {diff})"
        )
    state: dict[str, torch.Tensor] = dict(snn.tensors)
    for lc in snn.layers:
        mname, _, tname = lc.name.rpartition(".")
        module = model.get_submodule(mname)
        if runtime == "sparse" and lc.nnz <= SPARSE_MAX_DENSITY * lc.numel and tname == "weight":
            bias = (
                state.pop(f"{mname}.bias", None)
                if getattr(module, "bias", None) is not None
                else None
            )
            swapped = _sparse_module(module, lc, bias)
            if swapped is not None:
                _replace(model, mname, swapped)
                continue
            if bias is not None:
                state[f"{mname}.bias"] = bias
        state[lc.name] = torch.from_numpy(lc.dense())
    # assign=True adopts the decoded tensors as the parameters: no second copy.
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    _materialise(model)
    stale = [k for k in missing if not _is_sparse_buffer(model, k)]
    if stale or unexpected:
        raise CorruptFileError(
            f"{source}: tensors missing {stale[:3]} or unexpected {unexpected[:3]}"
        )
    return model.eval()


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _is_sparse_buffer(model: nn.Module, key: str) -> bool:
    mname = key.rpartition(".")[0]
    return isinstance(model.get_submodule(mname), (SparseLinear, SparseConv2d))


def _materialise(model: nn.Module) -> None:
    """Give every tensor still on the meta device real (uninitialised) CPU storage.

    Done by hand: ``Module.to_empty`` goes through ``torch._refs.empty_like``, whose first
    call imports ``torch.fx.experimental.symbolic_shapes`` (~1.5 s).
    """
    for m in model.modules():
        if isinstance(m, (SparseLinear, SparseConv2d)):
            continue
        for name, p in list(m._parameters.items()):
            if p is not None and p.is_meta:
                m._parameters[name] = nn.Parameter(
                    torch.empty(p.shape, dtype=p.dtype), p.requires_grad
                )
        for name, b in list(m._buffers.items()):
            if b is not None and b.is_meta:
                if name in m._non_persistent_buffers_set:
                    raise CorruptFileError(
                        f"{type(m).__name__}.{name} is a non-persistent buffer the file cannot restore"
                    )
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype)


def load_snn(
    path: str | os.PathLike[str], runtime: str = "dense", model: nn.Module | None = None
) -> nn.Module:
    """Load a ``.snn`` file as a runnable module in eval mode.

    Parameters
    ----------
    path : path of a file written by :func:`sparsenet.coding.save_snn`
    runtime : "dense" or "sparse"
        ``"dense"``: ordinary layers whose logits are bit-identical (float32) to the model
        that was saved. ``"sparse"``: sparsely stored layers compute from CSR matrices
        (equal up to float summation order).
    model : nn.Module, optional
        A bare model to fill, for architectures outside the registry.

    Raises
    ------
    CorruptFileError
        Truncated, corrupted, wrong-version or hostile files.
    """
    return build_model_from_snn(
        read_snn(path), runtime=runtime, model=model, source=os.fspath(path)
    )
