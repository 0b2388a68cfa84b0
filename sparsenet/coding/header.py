"""A ``.snn`` file's header and section table, fully checked, with nothing decoded.

:func:`parse_header` runs every check of :func:`sparsenet.coding.container.parse_snn` that
does not need a stream decoded: magic, version and flags, trailer, whole-file and header
CRCs, the JSON header, the section table (contiguous, inside the file, CRC-checked), every
layer and tensor entry type-checked, raw tensor sections against their shapes, and the
decode limit. It returns the header and section bytes as stored and decodes nothing, so
``sparsenet info``/``inspect`` (:mod:`sparsenet.coding.describe`) allocate no weight.

The decode limit lives here too: the float32 size of every layer plus the raw tensors a
file declares may be at most ``max(64 MiB, 128 x the file size)`` (docs/hostile-input.md),
replaced by :func:`set_decode_limit` (``--max-decode-mb``) or ``SPARSENET_MAX_DECODE_MB``.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError
from ..layers import KINDS
from .codec import CODERS, MODES, STREAMS, codebook_from_text

__all__ = [
    "MAGIC",
    "END_MAGIC",
    "VERSION",
    "FORMAT",
    "FLAG_DEFLATE",
    "MAX_HEADER_BYTES",
    "MIN_DECODE_BUDGET",
    "DECODE_RATIO",
    "DECODE_LIMIT_ENV",
    "TENSOR_DTYPES",
    "SnnHeader",
    "set_decode_limit",
    "decode_limit",
    "parse_header",
    "read_header",
    "tensor_nbytes",
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
# environment variable SPARSENET_MAX_DECODE_MB replace the limit (docs/hostile-input.md).
MIN_DECODE_BUDGET = 64 << 20
DECODE_RATIO = 128
DECODE_LIMIT_ENV = "SPARSENET_MAX_DECODE_MB"
_decode_limit: int | None = None

TENSOR_DTYPES = {
    "float32": (torch.float32, "<f4"),
    "float64": (torch.float64, "<f8"),
    "float16": (torch.float16, "<f2"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}


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


@dataclass(frozen=True)
class SnnHeader:
    """A checked ``.snn`` header and its sections as stored (nothing decoded).

    Attributes
    ----------
    header : dict
        The JSON header: ``arch``, ``transforms``, ``coder``, ``metadata``, ``layers``
        (coded weight tensors), ``tensors`` (raw tensors) and ``sections``.
    sections : list of bytes
        The bytes of every section, in the order of ``header["sections"]``.
    file_bytes : int
        Size of the whole file.
    source : str
        The file name, for messages.
    """

    header: dict[str, Any]
    sections: list[bytes]
    file_bytes: int
    source: str = "<bytes>"

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the header's ``metadata`` (empty when it has none)."""
        return dict(self.header.get("metadata") or {})

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The coded weight tensors' entries (name, kind, shape, mode, nnz, entries...)."""
        return list(self.header["layers"])

    @property
    def tensors(self) -> list[dict[str, Any]]:
        """The raw tensors' entries (name, dtype, shape, section)."""
        return list(self.header["tensors"])

    def layer_sections(self, entry: dict[str, Any]) -> dict[str, bytes]:
        """``{stream name: stored bytes}`` of one entry of :attr:`layers`."""
        return {k: self.sections[v] for k, v in entry["sections"].items()}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every stored tensor, coded or raw, by state-dict key."""
        return {e["name"]: tuple(e["shape"]) for e in self.layers + self.tensors}


def tensor_nbytes(entry: dict[str, Any]) -> int:
    """Bytes of a (checked) raw tensor entry: its shape times its dtype's size."""
    n = int(np.prod(entry["shape"], dtype=object)) if entry["shape"] else 1
    return n * np.dtype(TENSOR_DTYPES[entry["dtype"]][1]).itemsize


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


def _read_json(data: bytes, source: str) -> tuple[dict[str, Any], int]:
    """Frame, CRC and JSON checks; returns the header dict and the offset of the sections."""
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
    return header, data_start


def _read_sections(header: dict[str, Any], data: bytes, start: int, source: str) -> list[bytes]:
    """The section table: contiguous, inside the file, CRC-checked; returns the blobs."""
    table: Any = header.get("sections")
    _need(isinstance(table, list), f"{source}: no section table")
    data_len = len(data) - _TRAIL.size - start
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
        blob = data[start + off : start + off + s["length"]]
        _need(zlib.crc32(blob) == s["crc32"], f"{source}: section #{i} CRC32 mismatch (corrupted)")
        blobs.append(blob)
        off += s["length"]
    _need(off == data_len, f"{source}: {data_len - off} unaccounted bytes after the sections")
    return blobs


def parse_header(data: bytes, source: str = "<bytes>") -> SnnHeader:
    """Check the bytes of a ``.snn`` file up to, not including, decoding its streams.

    Parameters
    ----------
    data : bytes
        The whole file (the whole-file CRC covers every byte).
    source : str
        The file name for messages.

    Returns
    -------
    SnnHeader
        The header and section bytes; layer entries are type-checked and their declared
        float32 size plus the raw tensors' bytes are within :func:`decode_limit`.

    Raises
    ------
    CorruptFileError
        Any failed check, in one line naming the file.
    """
    header, start = _read_json(data, source)
    blobs = _read_sections(header, data, start, source)
    # Layers and tensors: check declared sizes before anything is decoded.
    layers_m: Any = header.get("layers")
    tensors_m: Any = header.get("tensors")
    _need(
        isinstance(layers_m, list) and isinstance(tensors_m, list),
        f"{source}: header lacks layers/tensors lists",
    )
    size = len(data)
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
        _check_shape(f"tensor {t['name']!r}", t.get("shape"))
        nbytes = tensor_nbytes(t)
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
    return SnnHeader(header, blobs, size, source)


def read_header(path: str | os.PathLike[str]) -> SnnHeader:
    """Read a ``.snn`` file and check everything but its streams (see :func:`parse_header`)."""
    p = Path(path)
    if not p.is_file():
        raise CorruptFileError(f"{p}: no such file")
    return parse_header(p.read_bytes(), str(p))
