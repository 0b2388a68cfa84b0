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
file's actual size before anything is allocated from it. The checks that need no stream
decoded (and the decode limit) are in :mod:`sparsenet.coding.header`, whose
:func:`~sparsenet.coding.header.read_header` is all that ``sparsenet info``/``inspect`` read.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError, SparsenetError
from ..io import atomic_write_bytes
from .codec import STREAMS, LayerCode, decode_layer
from .header import (
    _PRE,
    _TRAIL,
    END_MAGIC,
    FLAG_DEFLATE,
    FORMAT,
    MAGIC,
    TENSOR_DTYPES,
    VERSION,
    SnnHeader,
    decode_limit,
    parse_header,
    read_header,
    set_decode_limit,
)
from .header import MAX_HEADER_BYTES as MAX_HEADER_BYTES  # re-exported: tests and callers

__all__ = [
    "MAGIC",
    "VERSION",
    "CorruptFileError",
    "SnnFile",
    "is_snn_header",
    "write_snn",
    "read_snn",
    "parse_snn",
    "snn_from_header",
    "set_decode_limit",
    "decode_limit",
]

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
def parse_snn(data: bytes, source: str = "<bytes>") -> SnnFile:
    """Validate and decode the bytes of a ``.snn`` file. Raises :class:`CorruptFileError`.

    :func:`~sparsenet.coding.header.parse_header` checks everything up to the streams
    (frame, CRCs, JSON, section table, entries, decode limit); then every layer's streams
    are decoded and checked (:func:`~sparsenet.coding.codec.decode_layer`) and the raw
    tensors copied out.
    """
    hdr = parse_header(data, source)
    return snn_from_header(hdr)


def snn_from_header(hdr: SnnHeader) -> SnnFile:
    """Decode the streams and raw tensors of a checked header (see :func:`parse_snn`)."""
    layers = [decode_layer(m, hdr.layer_sections(m)) for m in hdr.layers]
    tensors = {}
    for t in hdr.tensors:
        tdt, npdt = TENSOR_DTYPES[t["dtype"]]
        arr = np.frombuffer(hdr.sections[t["section"]], dtype=npdt).reshape(t["shape"])
        tensors[t["name"]] = torch.from_numpy(arr.copy()).to(tdt)
    return SnnFile(hdr.header, layers, tensors, hdr.file_bytes)


def read_snn(path: str | os.PathLike[str]) -> SnnFile:
    """Read and fully validate a ``.snn`` file (header checks, then every stream decoded)."""
    return snn_from_header(read_header(path))
