"""``sparsenet export``: a .snn as the dense decoded ONNX model (for onnxruntime)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_output_args, emit, input_shape

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write the dense decoded model of a .snn (ONNX)")
    p.add_argument("model_path", metavar="MODEL", help=".snn file")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", required=True, help="output path (.onnx)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--input-shape", type=input_shape, default=None,
                   help="per-sample input shape C,H,W for custom models")
    add_output_args(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..runtime.export import export_onnx, require_onnx

    require_onnx()  # before reading anything: exit 2 with the install line
    r = export_onnx(args.model_path, args.out, input_shape=args.input_shape, opset=args.opset)
    emit(args, r, f"{args.model_path} -> {args.out} ({r['bytes']:,} bytes, ONNX, dense)")
    return 0
