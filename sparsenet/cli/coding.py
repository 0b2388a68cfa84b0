"""``sparsenet compress``, ``sparsenet decompress`` and ``sparsenet inspect`` (.snn files)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from torch import nn

from ..checkpoint import save_model
from ..coding.accounting import format_report
from ..coding.codec import CODERS, LAYOUTS
from ..coding.describe import inspect_snn
from ..coding.save import DEFAULT_WEIGHT_BITS, bits_for, codebook_of, parse_bits, save_snn
from ..errors import SparsenetError
from ..layers import compressible_tensors
from ..loading import file_kind, load
from ..progress import log
from ..share import share_weights
from ..sources import load_model_source
from .common import add_output_args, add_weights_arg, emit

__all__ = ["register", "compress_model_file", "ensure_shared", "is_shared", "check_bits_of_shared"]


def register(sub: Any) -> None:
    p = sub.add_parser("compress", help="pruned/shared checkpoint (.pt) -> compressed model (.snn)")
    p.add_argument("model_path", metavar="MODEL", help="checkpoint (.pt) or another model source")
    add_weights_arg(p)
    p.add_argument(
        "--weight-bits", default=None,
        help="shared-weight index width (default conv=8,fc=5, or per layer); a model that is "
        "already shared keeps its codebooks, so other widths are refused",
    )
    p.add_argument("--bits", dest="weight_bits", default=None, help=argparse.SUPPRESS)  # old name
    p.add_argument(
        "--gap-bits",
        default="conv=8,fc=5",
        help="sparse-index gap width (Deep Compression: 8 conv, 5 fc), or auto: the "
        "smallest file per layer",
    )
    p.add_argument("--index-bits", dest="gap_bits", default="conv=8,fc=5",
                   help=argparse.SUPPRESS)  # old name
    p.add_argument("--coder", choices=sorted(CODERS), default="huffman")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="auto",
        help="auto: smallest storage per layer; sparse: always gaps + indices for pruned layers",
    )
    p.add_argument("--out", required=True, help="output .snn path")
    add_output_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="compressed model (.snn) -> checkpoint (.pt)")
    p.add_argument("model_path", metavar="MODEL", help=".snn file")
    p.add_argument("--out", required=True, help="output checkpoint path (.pt)")
    add_output_args(p)
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser(
        "inspect", help="size accounting of a .snn file (Deep Compression Tables 2-3)"
    )
    p.add_argument("model_path", metavar="MODEL", help=".snn file (another source: as compress writes it)")
    add_weights_arg(p)
    add_output_args(p)
    p.set_defaults(func=cmd_inspect)


def is_shared(model: nn.Module, weight_bits: str | dict[str, int] | None = None) -> bool:
    """True if every compressible tensor has a codebook parametrisation or at most
    ``2**weight_bits`` distinct non-zeros."""
    b = parse_bits(weight_bits, DEFAULT_WEIGHT_BITS)
    for t in compressible_tensors(model):
        if codebook_of(t.module, t.tensor) is not None:
            continue
        w = t.value.detach()
        if w[w != 0].unique().numel() > 1 << bits_for(t, b, DEFAULT_WEIGHT_BITS):
            return False
    return True


def parametrized_codebook(module: nn.Module) -> bool:
    from ..coding.save import codebook_of

    return codebook_of(module, "weight") is not None


def ensure_shared(
    model: nn.Module, weight_bits: str | dict[str, int], quiet: bool = True
) -> nn.Module:
    """Share weights with :func:`sparsenet.share.share_weights` unless the model already is."""
    if is_shared(model, weight_bits):
        return model
    log(f"sharing weights ({weight_bits}) before encoding", quiet)
    return share_weights(model, weight_bits=weight_bits)


def compress_model_file(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    weight_bits: str | dict[str, int] = "conv=8,fc=5",
    coder: str = "huffman",
    gap_bits: str | dict[str, int] = "conv=8,fc=5",
    layout: str = "auto",
    model: nn.Module | None = None,
    metadata: dict[str, Any] | None = None,
    quiet: bool = True,
    weights: str | None = None,
) -> dict[str, Any]:
    """Load a model source (or take ``model``), share it if needed, write ``out`` as .snn.

    Returns the size report (see :func:`sparsenet.coding.accounting.size_report`).
    """
    meta: dict[str, Any] = {}
    if model is None:
        model, meta = load_model_source(os.fspath(model_path), weights)
    meta = {k: v for k, v in meta.items() if k not in ("history", "config")}
    meta.update(metadata or {})
    parse_bits(weight_bits, DEFAULT_WEIGHT_BITS)  # fail fast on a bad spec
    model = ensure_shared(model, weight_bits, quiet)
    report = save_snn(
        model, out, coder=coder, weight_bits=weight_bits, gap_bits=gap_bits, metadata=meta,
        layout=layout,
    )
    report["out"] = os.fspath(out)
    return report


def check_bits_of_shared(model: nn.Module, weight_bits: str | dict[str, int]) -> None:
    """Refuse ``--weight-bits`` that differ from an already shared tensor's codebook (they
    would be ignored: the encoder stores the codebook the model has)."""
    b = parse_bits(weight_bits, DEFAULT_WEIGHT_BITS)
    for t in compressible_tensors(model):
        cb = codebook_of(t.module, t.tensor)
        want = bits_for(t, b, DEFAULT_WEIGHT_BITS)
        if cb is not None and cb[1] != want:
            raise SparsenetError(
                f"--weight-bits {weight_bits}: layer {t.name!r} is already shared with {cb[1]} "
                f"bits ({cb[0].numel()} centroids), not {want}; re-share the unshared checkpoint "
                f"with `sparsenet share --weight-bits {weight_bits}`, or compress without "
                "--weight-bits"
            )


def cmd_compress(args: argparse.Namespace) -> int:
    if args.weight_bits is not None:
        model, _meta = load_model_source(args.model_path, args.weights)
        check_bits_of_shared(model, args.weight_bits)
    report = compress_model_file(
        args.model_path,
        args.out,
        weight_bits=args.weight_bits or "conv=8,fc=5",
        coder=args.coder,
        gap_bits=args.gap_bits,
        layout=args.layout,
        quiet=args.quiet or args.json,
        weights=args.weights,
    )
    emit(args, report, lambda: format_report(report) + f"\n-> {args.out}")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    if file_kind(args.model_path) != "snn":
        raise SparsenetError(f"{args.model_path}: not a .snn file; expected a compressed model")
    model, meta = load(args.model_path, with_metadata=True)
    save_model(model, args.out, metadata={**meta, "decompressed_from": os.fspath(args.model_path)})
    result = {
        "model": os.fspath(args.model_path),
        "out": os.fspath(args.out),
        "bytes": os.path.getsize(args.out),
    }
    emit(args, result, f"{args.model_path} -> {args.out} ({result['bytes']:,} bytes)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """The size table of a .snn file from its header (:func:`sparsenet.coding.inspect_snn`:
    no weight is decoded; only the symbol streams, for the entropy bounds)."""
    from ..sources import source_kind

    if source_kind(args.model_path) != "snn":  # the file `compress` would write, by default
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "model.snn")
            compress_model_file(args.model_path, out, weights=args.weights)
            report = inspect_snn(out)
    else:
        report = inspect_snn(args.model_path)
    report["file"] = os.fspath(args.model_path)
    emit(args, report, lambda: f"{args.model_path}\n" + format_report(report))
    return 0
