"""Size accounting laid out like Deep Compression's Tables 2-3.

Per layer and in total: #weights, density, weight (index) bits and sparse-index (gap) bits
before and after entropy coding, the Shannon bound ``n * H`` of each symbol stream, the
ratio actual/bound (payload only; code tables are counted separately), and the
compression ratio against dense float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..layers import bias_key, name_of_key
from .codec import CODERS, STREAMS, LayerCode, decode_layer
from .container import SnnFile
from .header import TENSOR_DTYPES, SnnHeader, tensor_nbytes

__all__ = [
    "entropy_bits",
    "stream_stats",
    "layer_row",
    "size_report",
    "header_size_report",
    "format_report",
]


def entropy_bits(symbols: np.ndarray) -> float:
    """``n * H(p)`` of the empirical distribution of ``symbols`` (0 for < 2 distinct)."""
    s = np.asarray(symbols, dtype=np.int64)
    if s.size == 0:
        return 0.0
    c = np.bincount(s)
    p = c[c > 0] / s.size
    return float(-(c[c > 0] * np.log2(p)).sum())


def stream_stats(symbols: np.ndarray, coded: bytes, coder: str, width: int) -> dict[str, Any]:
    """Raw, coded, table and bound bits of one symbol stream."""
    n = int(np.asarray(symbols).size)
    table = 8 * CODERS[coder].table_bytes(coded) if coded else 0
    payload = 8 * len(coded) - table
    bound = entropy_bits(symbols)
    return {
        "symbols": n,
        "raw_bits": n * width,
        "coded_bits": 8 * len(coded),
        "table_bits": table,
        "payload_bits": payload,
        "entropy_bits": bound,
        "bits_per_symbol": payload / n if n else 0.0,
        "entropy_per_symbol": bound / n if n else 0.0,
        "actual_over_bound": payload / bound if bound > 0 else None,
    }


def layer_row(lc: LayerCode, bias_numel: int) -> dict[str, Any]:
    """One table row for an encoded weight tensor (and its float32 bias)."""
    k = 0 if lc.codebook is None else int(lc.codebook.size)
    row: dict[str, Any] = {
        "layer": name_of_key(lc.name),
        "kind": lc.kind,
        "mode": lc.mode,
        "weights": lc.numel,
        "nnz": lc.nnz,
        "density": lc.nnz / lc.numel if lc.numel else 0.0,
        "bits": lc.bits,
        "index_bits": lc.index_bits,
        "entries": lc.entries,
        "fillers": lc.entries - lc.nnz if lc.mode in ("sparse", "sparse_raw") else 0,
        "codebook_bits": 32 * k,
        "bias_bits": 32 * bias_numel,
    }
    streams: dict[str, Any] = {}
    for name in STREAMS[lc.mode]:
        if name == "values":
            nbits = 32 * lc.entries
            streams[name] = {
                "symbols": lc.entries,
                "raw_bits": nbits,
                "coded_bits": nbits,
                "table_bits": 0,
                "payload_bits": nbits,
                "entropy_bits": None,
                "bits_per_symbol": 32.0,
                "entropy_per_symbol": None,
                "actual_over_bound": None,
            }
        elif name == "gaps":
            streams[name] = stream_stats(
                lc.stream("gaps"), lc.sections[name], lc.coder, int(lc.index_bits or 0)
            )
        else:
            sym = lc.stream("index")
            # fixed-width cost: k centroids, plus the zero / filler symbol if the stream uses it
            values = k + int(bool(sym.size) and not bool(sym.all()))
            width = max(1, math.ceil(math.log2(values))) if values > 1 else 1
            streams[name] = stream_stats(sym, lc.sections[name], lc.coder, width)
    row["streams"] = streams
    weight: dict[str, Any] = streams["index"] if "index" in streams else streams["values"]
    gaps: dict[str, Any] | None = streams.get("gaps")
    row["weight_bits_before"] = weight["raw_bits"]
    row["weight_bits_after"] = weight["coded_bits"]
    row["weight_entropy_bits"] = weight["entropy_bits"]
    row["index_bits_before"] = gaps["raw_bits"] if gaps else 0
    row["index_bits_after"] = gaps["coded_bits"] if gaps else 0
    row["index_entropy_bits"] = gaps["entropy_bits"] if gaps else None
    extra = row["codebook_bits"] + row["bias_bits"]
    row["total_bits_before"] = row["weight_bits_before"] + row["index_bits_before"] + extra
    row["total_bits_after"] = row["weight_bits_after"] + row["index_bits_after"] + extra
    row["dense_bits"] = 32 * (lc.numel + bias_numel)
    row["ratio_before"] = row["dense_bits"] / max(1, row["total_bits_before"])
    row["ratio"] = row["dense_bits"] / max(1, row["total_bits_after"])
    return row


def size_report(snn: SnnFile) -> dict[str, Any]:
    """Per-layer rows and totals for a parsed (or just written) ``.snn`` file."""
    tensors = {k: (int(t.numel()), 8 * t.element_size()) for k, t in snn.tensors.items()}
    return _report(snn.header, snn.layers, tensors, snn.file_bytes)


def header_size_report(hdr: SnnHeader) -> dict[str, Any]:
    """:func:`size_report` of a file read with :func:`~sparsenet.coding.header.read_header`.

    Everything but the entropy bounds comes from the header and the section lengths. The
    bounds ``n * H`` need the symbol histograms, so each layer's gap and index symbol
    streams (never its float32 values, never a dense weight) are decoded and checked,
    one layer at a time, and dropped once its row is made: at most 8 bytes per stored
    entry of one stream at a time (plus the decoder's scratch), for layers whose float32
    size the header check already held to the decode limit. The result equals
    :func:`size_report` of the fully decoded file.
    """
    tensors = {
        t["name"]: (tensor_nbytes(t) // _itemsize(t), 8 * _itemsize(t))
        for t in hdr.tensors
    }
    layers = (decode_layer(m, hdr.layer_sections(m), values=False) for m in hdr.layers)
    return _report(hdr.header, layers, tensors, hdr.file_bytes)


def _itemsize(entry: dict[str, Any]) -> int:
    return int(np.dtype(TENSOR_DTYPES[entry["dtype"]][1]).itemsize)


def _report(
    header: dict[str, Any],
    layers: Iterable[LayerCode],
    tensors: dict[str, tuple[int, int]],
    file_bytes: int,
) -> dict[str, Any]:
    """Rows and totals from layers (consumed one at a time) and raw tensors' (numel, bits)."""
    rows, biases = [], set()
    for lc in layers:
        b = bias_key(lc.name)  # fc1.weight -> fc1.bias
        if b is not None and b in tensors:
            biases.add(b)
        rows.append(layer_row(lc, tensors[b][0] if b is not None and b in tensors else 0))
    other = sum(n * bits for k, (n, bits) in tensors.items() if k not in biases)
    total: dict[str, Any] = {"layer": "total"}
    for key in (
        "weights",
        "nnz",
        "entries",
        "fillers",
        "codebook_bits",
        "bias_bits",
        "weight_bits_before",
        "weight_bits_after",
        "index_bits_before",
        "index_bits_after",
        "total_bits_before",
        "total_bits_after",
        "dense_bits",
    ):
        total[key] = sum(r[key] for r in rows)
    for key in ("weight_entropy_bits", "index_entropy_bits"):
        total[key] = sum(r[key] or 0.0 for r in rows)
    total["density"] = total["nnz"] / max(1, total["weights"])
    total["other_tensor_bits"] = int(other)
    total["dense_bits"] += int(other)
    total["ratio_before"] = total["dense_bits"] / max(1, total["total_bits_before"] + other)
    total["ratio"] = total["dense_bits"] / max(1, total["total_bits_after"] + other)
    total["file_bytes"] = file_bytes
    total["ratio_file"] = total["dense_bits"] / max(1, 8 * file_bytes)
    return {
        "coder": header.get("coder"),
        "arch": header.get("arch"),
        "layers": rows,
        "total": total,
    }


def _kb(bits: float) -> str:
    return f"{bits / 8192:8.1f}"


def format_report(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table (sizes in KiB)."""
    head = (
        f"{'layer':<10}{'mode':<11}{'#weights':>10}{'density':>8}{'wt b':>5}{'gap b':>6}"
        f"{'wt KiB':>9}{'->':>3}{'coded':>8}{'idx KiB':>9}{'->':>3}{'coded':>8}"
        f"{'wt/H':>7}{'idx/H':>7}{'ratio':>8}"
    )
    lines = [f"coder: {report['coder']}", head, "-" * len(head)]
    for r in report["layers"] + [report["total"]]:
        st = r.get("streams", {})
        wb = st.get("index", {}).get("actual_over_bound")
        gb = st.get("gaps", {}).get("actual_over_bound")
        lines.append(
            f"{r['layer']:<10}{r.get('mode', ''):<11}{r['weights']:>10,}{r['density']:>8.1%}"
            f"{r.get('bits') or '':>5}{r.get('index_bits') or '':>6}"
            f"{_kb(r['weight_bits_before'])} {'':>2}{_kb(r['weight_bits_after'])[-8:]}"
            f"{_kb(r['index_bits_before'])} {'':>2}{_kb(r['index_bits_after'])[-8:]}"
            f"{(f'{wb:.3f}' if wb else '-'):>7}{(f'{gb:.3f}' if gb else '-'):>7}{r['ratio']:>7.1f}x"
        )
    t = report["total"]
    lines.append(
        f"file {t['file_bytes']:,} bytes; dense float32 {t['dense_bits'] // 8:,} bytes; "
        f"{t['ratio_file']:.1f}x smaller (before entropy coding {t['ratio_before']:.1f}x of tensors)"
    )
    return "\n".join(lines)
