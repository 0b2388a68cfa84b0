"""The ``.snn`` file: a compressed model that loads straight back into a runnable module.

Layout (all integers little-endian; byte-by-byte description in docs/coding.md)::

    0   8   magic  b"\\x89SNN\\r\\n\\x1a\\n"
    8   2   u16 format version (1)
    10  2   u16 flags (bit 0: the header is zlib-deflated; other bits must be 0)
    12  4   u32 header length H (as stored)
    16  4   u32 CRC32 of the header bytes (as stored)
    20  H   UTF-8 JSON header (architecture, transforms, layers, tensors, section table)
    ..      sections, back to back; header["sections"][i] = {offset, length, crc32},
            offsets relative to the first section byte
    -16 8   u64 total file length
    -8  4   u32 CRC32 of every byte before this trailer
    -4  4   end magic b"SNNE"

Every check runs before the data it guards is used, and every size is compared with the
file's actual size before anything is allocated from it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CorruptFileError, SparsenetError
from ..io import atomic_write_bytes
from ..layers import KINDS
from .codec import CODERS, MODES, STREAMS, LayerCode, codebook_from_text, decode_layer

__all__ = [
    "MAGIC",
    "VERSION",
    "SnnFile",
    "is_snn_header",
    "write_snn",
    "read_snn",
    "parse_snn",
    "load_with_metadata",
    "set_decode_limit",
    "decode_limit",
]

MAGIC = b"\x89SNN\r\n\x1a\n"
END_MAGIC = b"SNNE"
VERSION = 1
FORMAT = "sparsenet-snn"
FLAG_DEFLATE = 1  # flags bit 0: the JSON header is stored zlib-deflated
# An inflated header may be at most this large (a hostile file cannot make us allocate more).
MAX_HEADER_BYTES = 16 << 20
_PRE = struct.Struct("<8sHHII")  # magic, version, flags, header length, header CRC32
_TRAIL = struct.Struct("<QI4s")  # file length, CRC32 of all preceding bytes, end magic
# Decoded tensors may take at most max(MIN_DECODE_BUDGET, DECODE_RATIO x file size) bytes
# (Deep Compression's best ratios are 35-49x, so 128x leaves room for very sparse models
# while a 1 MB hostile file decodes to at most 128 MB). `--max-decode-mb N` or the
# environment variable SPARSENET_MAX_DECODE_MB replace the limit (docs/limits.md).
MIN_DECODE_BUDGET = 64 << 20
DECODE_RATIO = 128
DECODE_LIMIT_ENV = "SPARSENET_MAX_DECODE_MB"
_decode_limit: int | None = None


def set_decode_limit(nbytes: int | None) -> None:
    """Replace the decode budget by ``nbytes`` for every file read after this (None: default)."""
    global _decode_limit
    if nbytes is not None and nbytes < 1:
        raise ValueError(f"decode limit {nbytes!r}: expected a number of bytes >= 1")
    _decode_limit = nbytes


def decode_limit(file_bytes: int) -> int:
    """Bytes of decoded tensors a ``file_bytes``-byte ``.snn`` may declare."""
    if _decode_limit is not None:
        return _decode_limit
    env = os.environ.get(DECODE_LIMIT_ENV)
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise CorruptFileError(
                f"{DECODE_LIMIT_ENV}={env!r}: expected a number of megabytes"
            ) from None
        if mb > 0:
            return int(mb * (1 << 20))
    return max(MIN_DECODE_BUDGET, DECODE_RATIO * file_bytes)
TENSOR_DTYPES = {
    "float32": (torch.float32, "<f4"),
    "float64": (torch.float64, "<f8"),
    "float16": (torch.float16, "<f2"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}
_DTYPE_NAMES = {v[0]: k for k, v in TENSOR_DTYPES.items()}


class SnnFile:
    """A parsed ``.snn`` file: its JSON ``header``, decoded ``layers`` and raw ``tensors``."""

    def __init__(
        self,
        header: dict[str, Any],
        layers: list[LayerCode],
        tensors: dict[str, torch.Tensor],
        file_bytes: int,
    ):
        self.header = header
        self.layers = layers
        self.tensors = tensors
        self.file_bytes = file_bytes

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.header.get("metadata") or {})


def is_snn_header(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts with the ``.snn`` magic."""
    return bytes(head[: len(MAGIC)]) == MAGIC


# ---------------------------------------------------------------------------- writing
def write_snn(
    path: str | os.PathLike[str],
    layers: list[LayerCode],
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    deflate_header: bool = True,
) -> int:
    """Write layers, raw tensors and ``info`` (arch, transforms, coder, metadata) atomically.

    ``deflate_header`` stores the JSON header zlib-compressed (flag bit 0) when that is
    smaller. Returns the file size in bytes.
    """
    sections: list[bytes] = []

    def add(blob: bytes) -> int:
        sections.append(blob)
        return len(sections) - 1

    layer_meta = []
    for lc in layers:
        meta = lc.header()
        meta["sections"] = {s: add(lc.sections[s]) for s in STREAMS[lc.mode]}
        layer_meta.append(meta)
    tensor_meta = []
    for name, t in tensors.items():
        if t.dtype not in _DTYPE_NAMES:
            raise SparsenetError(
                f"{name}: dtype {t.dtype} cannot be stored; expected one of {sorted(TENSOR_DTYPES)}"
            )
        dt = _DTYPE_NAMES[t.dtype]
        blob = t.detach().cpu().contiguous().numpy().astype(TENSOR_DTYPES[dt][1]).tobytes()
        tensor_meta.append(
            {"name": name, "dtype": dt, "shape": list(t.shape), "section": add(blob)}
        )
    table, off = [], 0
    for blob in sections:
        table.append({"offset": off, "length": len(blob), "crc32": zlib.crc32(blob)})
        off += len(blob)
    header = {
        "format": FORMAT,
        "version": VERSION,
        **info,
        "layers": layer_meta,
        "tensors": tensor_meta,
        "sections": table,
    }
    try:
        text = json.dumps(header, separators=(",", ":"), allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise SparsenetError(f".snn header (metadata?) is not plain JSON: {exc}") from None
    hbytes, flags = text.encode("utf-8"), 0
    if deflate_header:
        # JSON (names, shapes, codebooks in base64, the section table) deflates to about 60%:
        # a kilobyte or two, which is several percent of a small compressed model's file.
        packed = zlib.compress(hbytes, 9)
        if len(packed) < len(hbytes):
            hbytes, flags = packed, FLAG_DEFLATE
    body = (
        _PRE.pack(MAGIC, VERSION, flags, len(hbytes), zlib.crc32(hbytes))
        + hbytes
        + b"".join(sections)
    )
    size = len(body) + _TRAIL.size
    data = body + _TRAIL.pack(size, zlib.crc32(body), END_MAGIC)
    atomic_write_bytes(path, data)
    return size


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    return str(obj)


# ---------------------------------------------------------------------------- reading
def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise CorruptFileError(msg)


def _is_int(v: Any, lo: int = 0, hi: int = 1 << 62) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_shape(where: str, shape: Any) -> int:
    _need(
        isinstance(shape, list) and len(shape) <= 8 and all(_is_int(s, 0, 1 << 40) for s in shape),
        f"{where}: shape {str(shape)[:80]} is not a list of at most 8 sizes",
    )
    return int(np.prod(shape, dtype=object)) if shape else 1


_LAYER_KEYS = {
    "name",
    "kind",
    "shape",
    "mode",
    "coder",
    "nnz",
    "entries",
    "bits",
    "index_bits",
    "codebook",
    "sections",
}


def _check_layer(i: int, m: Any, n_sections: int) -> int:
    """Type-check one layer entry; returns its number of weights."""
    where = f"layer #{i}"
    _need(isinstance(m, dict), f"{where}: not an object")
    _need(isinstance(m.get("name"), str), f"{where}: no name")
    where = f"layer {m['name']!r}"
    missing = _LAYER_KEYS - set(m)
    _need(not missing, f"{where}: missing keys {sorted(missing)}")
    for key in ("bits", "index_bits"):
        _need(
            m[key] is None or _is_int(m[key], 1, 16), f"{where}: {key} {m[key]!r} not null or 1..16"
        )
    numel = _check_shape(where, m.get("shape"))
    _need(m.get("mode") in MODES, f"{where}: mode {m.get('mode')!r}, expected one of {MODES}")
    _need(
        m.get("coder") in CODERS,
        f"{where}: coder {m.get('coder')!r}, expected one of {sorted(CODERS)}",
    )
    _need(m.get("kind") in KINDS, f"{where}: kind {m.get('kind')!r}, expected one of {KINDS}")
    _need(_is_int(m.get("nnz"), 0, numel), f"{where}: nnz {m.get('nnz')!r} not in [0, {numel}]")
    _need(
        _is_int(m.get("entries"), m["nnz"], numel),
        f"{where}: entries {m.get('entries')!r} not in [nnz, {numel}]",
    )
    mode = m["mode"]
    sparse, shared = mode in ("sparse", "sparse_raw"), mode in ("codebook", "sparse")
    _need(
        sparse or m["entries"] == numel, f"{where}: a {mode} layer must have one entry per weight"
    )
    _need(
        not sparse or _is_int(m.get("index_bits"), 1, 16),
        f"{where}: index_bits {m.get('index_bits')!r} not in 1..16",
    )
    _need(
        not shared or _is_int(m.get("bits"), 1, 16), f"{where}: bits {m.get('bits')!r} not in 1..16"
    )
    cb = m.get("codebook")
    if shared:
        try:
            codebook_from_text(cb, 1 << m["bits"])
        except CorruptFileError as exc:
            raise CorruptFileError(f"{where}: {exc}") from None
    else:
        _need(cb is None, f"{where}: a {mode} layer has no codebook")
    secs = m.get("sections")
    _need(
        isinstance(secs, dict)
        and set(secs) == set(STREAMS[mode])
        and all(_is_int(v, 0, n_sections - 1) for v in secs.values()),
        f"{where}: sections {str(secs)[:80]} do not match mode {mode} ({STREAMS[mode]})",
    )
    return numel


def parse_snn(data: bytes, source: str = "<bytes>") -> SnnFile:
    """Validate and decode the bytes of a ``.snn`` file. Raises :class:`CorruptFileError`."""
    size = len(data)
    _need(
        size >= len(MAGIC) and data[: len(MAGIC)] == MAGIC, f"{source}: not a .snn file (bad magic)"
    )
    _need(size >= _PRE.size + _TRAIL.size, f"{source}: truncated ({size} bytes)")
    _, version, flags, hlen, hcrc = _PRE.unpack_from(data, 0)
    _need(
        version == VERSION,
        f"{source}: .snn format version {version}, this sparsenet reads {VERSION}",
    )
    _need(flags & ~FLAG_DEFLATE == 0, f"{source}: unknown flags {flags:#x}")
    flen, fcrc, end = _TRAIL.unpack_from(data, size - _TRAIL.size)
    _need(
        end == END_MAGIC and flen == size,
        f"{source}: truncated or extended (file is {size} bytes, trailer says {flen})",
    )
    _need(
        zlib.crc32(data[: size - _TRAIL.size]) == fcrc,
        f"{source}: whole-file CRC32 mismatch (corrupted)",
    )
    data_start = _PRE.size + hlen
    _need(
        data_start <= size - _TRAIL.size,
        f"{source}: header length {hlen} runs past the end of the file",
    )
    hbytes = data[_PRE.size : data_start]
    _need(zlib.crc32(hbytes) == hcrc, f"{source}: header CRC32 mismatch (corrupted)")
    if flags & FLAG_DEFLATE:
        hbytes = _inflate(hbytes, source)
    try:
        header = json.loads(hbytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{source}: header is not valid JSON ({str(exc)[:100]})") from None
    _need(
        isinstance(header, dict) and header.get("format") == FORMAT,
        f"{source}: header has no '{FORMAT}' format tag",
    )
    _need(
        header.get("version") == VERSION,
        f"{source}: header version {header.get('version')!r}, expected {VERSION}",
    )
    for key, types in (("metadata", dict), ("transforms", list), ("arch", dict)):
        value = header.get(key)
        _need(
            value is None or isinstance(value, types),
            f"{source}: header {key} is a {type(value).__name__}, expected a "
            f"{types.__name__} or null",
        )
    # Section table: contiguous, inside the file, CRC-checked.
    table = header.get("sections")
    _need(isinstance(table, list), f"{source}: no section table")
    data_len = size - _TRAIL.size - data_start
    blobs, off = [], 0
    for i, s in enumerate(table):
        _need(
            isinstance(s, dict)
            and _is_int(s.get("offset"))
            and _is_int(s.get("length"))
            and _is_int(s.get("crc32"), 0, 0xFFFFFFFF),
            f"{source}: section #{i} entry malformed",
        )
        _need(
            s["offset"] == off and off + s["length"] <= data_len,
            f"{source}: section #{i} ({s['offset']}+{s['length']}) is not inside the {data_len} data bytes",
        )
        blob = data[data_start + off : data_start + off + s["length"]]
        _need(zlib.crc32(blob) == s["crc32"], f"{source}: section #{i} CRC32 mismatch (corrupted)")
        blobs.append(blob)
        off += s["length"]
    _need(off == data_len, f"{source}: {data_len - off} unaccounted bytes after the sections")
    # Layers and tensors: check declared sizes before decoding anything.
    layers_m, tensors_m = header.get("layers"), header.get("tensors")
    _need(
        isinstance(layers_m, list) and isinstance(tensors_m, list),
        f"{source}: header lacks layers/tensors lists",
    )
    budget = decode_limit(size)
    declared = sum(4 * _check_layer(i, m, len(blobs)) for i, m in enumerate(layers_m))
    for i, t in enumerate(tensors_m):
        _need(
            isinstance(t, dict)
            and isinstance(t.get("name"), str)
            and t.get("dtype") in TENSOR_DTYPES
            and _is_int(t.get("section"), 0, len(blobs) - 1),
            f"{source}: tensor #{i} entry malformed",
        )
        n = _check_shape(f"tensor {t['name']!r}", t.get("shape"))
        nbytes = n * np.dtype(TENSOR_DTYPES[t["dtype"]][1]).itemsize
        _need(
            len(blobs[t["section"]]) == nbytes,
            f"{source}: tensor {t['name']!r} section holds {len(blobs[t['section']])} bytes, its shape needs {nbytes}",
        )
        declared += nbytes
    _need(
        declared <= budget,
        f"{source}: declares {declared:,} bytes of tensors, more than this {size:,}-byte file "
        f"can justify (decode limit {budget:,} bytes; raise it with --max-decode-mb)",
    )
    names = [m["name"] for m in layers_m] + [t["name"] for t in tensors_m]
    _need(len(set(names)) == len(names), f"{source}: duplicate tensor names")
    layers = []
    for m in layers_m:
        secs = {k: blobs[v] for k, v in m["sections"].items()}
        layers.append(decode_layer(m, secs))
    tensors = {}
    for t in tensors_m:
        tdt, npdt = TENSOR_DTYPES[t["dtype"]]
        arr = np.frombuffer(blobs[t["section"]], dtype=npdt).reshape(t["shape"])
        tensors[t["name"]] = torch.from_numpy(arr.copy()).to(tdt)
    return SnnFile(header, layers, tensors, size)


def _inflate(packed: bytes, source: str) -> bytes:
    """The deflated header, inflated to at most MAX_HEADER_BYTES; CorruptFileError otherwise."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(packed, MAX_HEADER_BYTES)
    except zlib.error as exc:
        raise CorruptFileError(f"{source}: deflated header does not inflate ({exc})") from None
    _need(
        d.eof and not d.unconsumed_tail and not d.unused_data,
        f"{source}: deflated header is truncated, padded or inflates past {MAX_HEADER_BYTES} bytes",
    )
    return out


def read_snn(path: str | os.PathLike[str]) -> SnnFile:
    """Read and fully validate a ``.snn`` file."""
    p = Path(path)
    if not p.is_file():
        raise CorruptFileError(f"{p}: no such file")
    return parse_snn(p.read_bytes(), str(p))


def load_with_metadata(
    path: str | os.PathLike[str], runtime: str = "dense", model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a ``.snn`` file as ``(model, metadata)``; see :func:`sparsenet.inference.load_snn`."""
    from ..inference import build_model_from_snn

    snn = read_snn(path)
    return build_model_from_snn(snn, runtime=runtime, model=model, source=str(path)), snn.metadata
