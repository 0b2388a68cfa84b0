"""Export a ``.snn`` model as the dense decoded ONNX graph (for onnxruntime deployments).

Needs the optional extra ``pip install sparsenet[onnx]`` (``onnx``; ``onnxruntime`` to run
or check the result). Uses torch's TorchScript-based exporter (``dynamo=False``), which
needs nothing beyond ``onnx``; the batch dimension is dynamic.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import torch
from torch import nn

from ..errors import SparsenetError
from ..io import atomic_write_bytes

__all__ = ["INSTALL_HINT", "export_onnx", "onnx_bytes", "require_onnx"]

INSTALL_HINT = "pip install 'sparsenet[onnx]'"


def require_onnx(runtime: bool = False) -> Any:
    """Import ``onnx`` (and ``onnxruntime`` with ``runtime=True``) or raise a SparsenetError."""
    try:
        import onnx

        if runtime:
            import onnxruntime

            return onnxruntime
        return onnx
    except ImportError as exc:
        raise SparsenetError(f"ONNX export needs {exc.name}; install it with: {INSTALL_HINT}") from None


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], opset: int = 17) -> bytes:
    """The ONNX serialisation of ``model`` (dense, eval mode) for inputs ``(batch, *input_shape)``."""
    require_onnx()
    buf = io.BytesIO()
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                model.eval(), (dummy,), buf,  # type: ignore[arg-type]
                dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        except Exception as exc:  # noqa: BLE001 - any exporter failure: the model is not exportable
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise SparsenetError(f"cannot export this model to ONNX opset {opset}: {reason}") from None
    return buf.getvalue()


def export_onnx(
    path: str | os.PathLike[str], out: str | os.PathLike[str],
    input_shape: tuple[int, ...] | None = None, opset: int = 17,
) -> dict[str, Any]:
    """Write the dense decoded model of the ``.snn`` at ``path`` to ``out`` (ONNX, atomically).

    ``input_shape`` (without the batch) is needed for custom models whose file does not say.
    Returns ``{"model", "out", "bytes", "input_shape"}``.
    """
    require_onnx()
    from ..loading import load  # loading -> inference -> runtime: imported when called
    from .plan import guess_input_shape

    model, meta = load(path, with_metadata=True)
    shape = input_shape or guess_input_shape(model, meta)
    if shape is None:
        raise SparsenetError(f"{os.fspath(path)}: input shape unknown; pass --input-shape C,H,W")
    data = onnx_bytes(model, tuple(shape), opset)
    atomic_write_bytes(out, data)
    return {"model": os.fspath(path), "out": os.fspath(out), "bytes": len(data),
            "input_shape": list(shape)}
