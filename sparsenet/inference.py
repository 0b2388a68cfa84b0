"""Runnable models from ``.snn`` files: ordinary dense layers, or sparse layers that compute
straight from the compressed representation.

``runtime="sparse"`` turns every Linear / Conv2d layer that has a codebook (or a density
<= 50 %) into :class:`~sparsenet.runtime.SparseLinear` / :class:`~sparsenet.runtime.SparseConv2d`,
which hold codebook indices plus column deltas (see :mod:`sparsenet.runtime`), and runs the
model through one compiled plan. The dense weight is never materialised, not even while
loading (the architecture is first built on the ``meta`` device). ``runtime="dense"``
decodes every weight into ordinary ``nn.Linear``/``nn.Conv2d``. The entry point is
:func:`sparsenet.load` (:mod:`sparsenet.loading`); this module builds the module from a
parsed file (:func:`build_model_from_snn`) or describes it from its header.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checkpoint import build_architecture
from .coding.container import SnnFile, read_snn
from .coding.describe import header_nonzeros
from .coding.header import SnnHeader, read_header
from .errors import CorruptFileError, SparsenetError
from .runtime.layers import SPARSE_LAYERS, SparseConv2d, SparseLinear
from .summary import model_summary

__all__ = [
    "RUNTIMES",
    "SparseLinear",
    "SparseConv2d",
    "build_model_from_snn",
    "snn_architecture",
    "SnnDescription",
    "describe_snn",
    "load_snn",
]

RUNTIMES = ("dense", "sparse")
# The sparse runtime keeps a layer dense above this density (CSR then costs more than it saves).
SPARSE_MAX_DENSITY = 0.5


def _sparse_module(original: nn.Module, lc: Any, bias: torch.Tensor | None) -> nn.Module | None:
    from .runtime.compact import from_layer_code

    if type(original) is nn.Linear:
        cw = from_layer_code(lc)
        return SparseLinear(original.in_features, original.out_features, cw, bias)
    if SparseConv2d.supports(original):
        return SparseConv2d(original, from_layer_code(lc), bias)  # type: ignore[arg-type]
    return None


def _sparse_attention(model: nn.Module, mname: str, lc: Any, by_name: dict[str, Any],
                      state: dict[str, torch.Tensor]) -> bool:
    """Swap the ``nn.MultiheadAttention`` at ``mname`` (its ``in_proj_weight`` is ``lc``) for
    :class:`~sparsenet.runtime.attention.SparseMultiheadAttention`; False when it cannot be."""
    from .runtime.attention import SparseMultiheadAttention
    from .runtime.compact import compact_from_dense, from_layer_code

    mha = model.get_submodule(mname)
    out_lc = by_name.get(f"{mname}.out_proj.weight")
    out_w = state.get(f"{mname}.out_proj.weight")
    if (not isinstance(mha, nn.MultiheadAttention) or not SparseMultiheadAttention.supports(mha)
            or (out_lc is None and out_w is None)):
        return False
    e = int(mha.embed_dim)
    in_proj = SparseLinear(e, 3 * e, from_layer_code(lc), state.pop(f"{mname}.in_proj_bias", None))
    out_cw = from_layer_code(out_lc) if out_lc is not None else compact_from_dense(out_w)  # type: ignore[arg-type]
    state.pop(f"{mname}.out_proj.weight", None)
    out_proj = SparseLinear(e, e, out_cw, state.pop(f"{mname}.out_proj.bias", None))
    _replace(model, mname, SparseMultiheadAttention(mha, in_proj, out_proj))
    return True


def _wants_sparse(lc: Any) -> bool:
    """Compact form for layers with a codebook (2 bytes a weight) or density <= 50 %."""
    shared = lc.codebook is not None and lc.codebook.size <= 256 and lc.mode != "dense"
    return shared or lc.nnz <= SPARSE_MAX_DENSITY * lc.numel


def build_model_from_snn(
    snn: SnnFile,
    runtime: str = "dense",
    model: nn.Module | None = None,
    source: str = "snn",
    threads: int | None = None,
) -> nn.Module:
    """The runnable module, in eval mode, for a parsed file (what :func:`sparsenet.load` returns).

    Parameters
    ----------
    snn : the parsed file (:func:`sparsenet.coding.container.read_snn`).
    runtime : "dense" or "sparse"
        ``"dense"``: ordinary layers whose logits are bit-identical (float32) to the model
        that was saved. ``"sparse"``: layers compute from codebook indices plus column
        deltas, the whole model as one compiled plan (equal up to float summation order;
        parameters are frozen, see docs/runtime.md).
    model : nn.Module, optional
        A bare model to fill, for architectures outside the registry.
    source : the file name, for messages.
    threads : int, optional
        ``runtime="sparse"``: threads for batches >= 16 (default ``torch.get_num_threads()``).

    Raises
    ------
    CorruptFileError
        Truncated, corrupted, wrong-version or hostile files.
    """
    if runtime not in RUNTIMES:
        raise SparsenetError(f"runtime={runtime!r}; expected one of {RUNTIMES}")
    declared = {lc.name: lc.shape for lc in snn.layers} | {
        k: tuple(v.shape) for k, v in snn.tensors.items()
    }
    model = snn_architecture(snn.header, declared, source, model)
    state: dict[str, torch.Tensor] = dict(snn.tensors)
    by_name = {lc.name: lc for lc in snn.layers}
    swapped_attention: set[str] = set()  # their out_proj.weight is inside the swap already
    for lc in snn.layers:
        mname, _, tname = lc.name.rpartition(".")
        if mname.rpartition(".")[0] in swapped_attention and mname.endswith("out_proj"):
            continue
        module = model.get_submodule(mname)
        if (runtime == "sparse" and tname == "in_proj_weight" and _wants_sparse(lc)
                and _sparse_attention(model, mname, lc, by_name, state)):
            swapped_attention.add(mname)
            continue
        if runtime == "sparse" and tname == "weight" and _wants_sparse(lc):
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
    model.eval()
    if runtime == "sparse":  # an inference runtime: one compiled plan, no autograd by default
        from .runtime.plan import attach_plan, guess_input_shape

        model.requires_grad_(False)
        attach_plan(model, threads, guess_input_shape(model, snn.metadata))
    return model


def snn_architecture(
    header: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    source: str = "snn",
    model: nn.Module | None = None,
) -> nn.Module:
    """The module a ``.snn`` header records, checked against the stored tensor shapes.

    Parameters
    ----------
    header : dict
        The file's JSON header (``arch`` and ``transforms`` are read).
    shapes : dict
        ``{state-dict key: shape}`` of every tensor the file stores.
    source : str
        The file name, for messages.
    model : nn.Module, optional
        A bare model to check instead of the recorded architecture.

    Returns
    -------
    nn.Module
        ``model``, or the recorded architecture built on the ``meta`` device with its
        module swaps replayed: its tensors have shapes but no storage, so hostile sizes
        allocate nothing.

    Raises
    ------
    CorruptFileError
        No architecture recorded (and no ``model``), one that cannot be built, or stored
        shapes that differ from it.
    """
    arch, transforms = header.get("arch"), header.get("transforms") or []
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
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes != expected:
        diff = sorted(set(shapes.items()) ^ set(expected.items()))[:3]
        raise CorruptFileError(
            f"{source}: stored tensors do not match the architecture (e.g. {diff})"
        )
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _is_sparse_buffer(model: nn.Module, key: str) -> bool:
    from .runtime.attention import SparseMultiheadAttention

    mname = key.rpartition(".")[0]
    return isinstance(model.get_submodule(mname), (*SPARSE_LAYERS, SparseMultiheadAttention))


def _materialise(model: nn.Module) -> None:
    """Give every tensor still on the meta device real (uninitialised) CPU storage.

    Done by hand: ``Module.to_empty`` goes through ``torch._refs.empty_like``, whose first
    call imports ``torch.fx.experimental.symbolic_shapes`` (~1.5 s).
    """
    for m in model.modules():
        if isinstance(m, SPARSE_LAYERS):
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
    path: str | os.PathLike[str],
    runtime: str = "dense",
    model: nn.Module | None = None,
    threads: int | None = None,
) -> nn.Module:
    """Deprecated: ``sparsenet.load(path, model, runtime, threads=threads)``.

    Reads a ``.snn`` file as :func:`sparsenet.load` does, without ``sparsenet_meta``.
    """
    warnings.warn(
        "sparsenet.inference.load_snn is deprecated; use sparsenet.load(path, runtime=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return build_model_from_snn(
        read_snn(path), runtime=runtime, model=model, source=os.fspath(path), threads=threads
    )


@dataclass(frozen=True)
class SnnDescription:
    """A ``.snn`` file described from its header (see :func:`describe_snn`).

    Attributes
    ----------
    header : SnnHeader
        The checked header and its sections as stored.
    model : nn.Module
        The recorded architecture with its module swaps, on the ``meta`` device: shapes,
        types and ``arch`` but no storage. Not runnable; load the file for that.
    summary : dict
        :func:`sparsenet.summary.model_summary` of the model the file holds, with the
        non-zero counts from :func:`sparsenet.coding.describe.header_nonzeros`.
    """

    header: SnnHeader
    model: nn.Module
    summary: dict[str, Any]


def describe_snn(path: str | os.PathLike[str]) -> SnnDescription:
    """Layers, shapes, non-zeros and transforms of a ``.snn`` file from its header alone.

    Parameters
    ----------
    path : str or PathLike
        A ``.snn`` file.

    Returns
    -------
    SnnDescription
        ``summary`` has the layout of :func:`sparsenet.summary.model_summary` and equals
        it for the loaded model (``sparsenet.load(path)``).

    Raises
    ------
    CorruptFileError
        Any failed header check (:func:`~sparsenet.coding.header.read_header`), no
        recorded architecture, or stored shapes that differ from it; the decode limit
        applies to what the header declares, although nothing is decoded.
    """
    hdr = read_header(path)
    model = snn_architecture(hdr.header, hdr.shapes(), hdr.source)
    return SnnDescription(hdr, model, model_summary(model, nonzero=header_nonzeros(hdr)))
