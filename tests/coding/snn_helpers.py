"""Build hostile .snn files: recompute every checksum after tampering."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any


def rechecksum(data: bytes) -> bytes:
    """Recompute every CRC and the trailer of a (tampered) .snn file, as a hostile writer would."""
    from sparsenet.coding.container import _PRE, _TRAIL, END_MAGIC

    magic, version, flags, hlen, _ = _PRE.unpack_from(data, 0)
    hbytes = data[_PRE.size : _PRE.size + hlen]
    body_end = len(data) - _TRAIL.size
    start = _PRE.size + hlen
    try:
        header = json.loads(hbytes)
        for s in header["sections"]:
            s["crc32"] = zlib.crc32(data[start + s["offset"] : start + s["offset"] + s["length"]])
        new_h = json.dumps(header, separators=(",", ":")).encode()
    except Exception:  # noqa: BLE001 - leave a broken header broken
        new_h = hbytes
    body = (
        _PRE.pack(magic, version, flags, len(new_h), zlib.crc32(new_h))
        + new_h
        + data[start:body_end]
    )
    size = len(body) + _TRAIL.size
    return body + _TRAIL.pack(size, zlib.crc32(body), END_MAGIC)


def edit_header(data: bytes, fn: Callable[[dict[str, Any]], None]) -> bytes:
    """Apply ``fn(header_dict)`` to a file's header and re-checksum."""
    from sparsenet.coding.container import _PRE

    _, _, _, hlen, _ = _PRE.unpack_from(data, 0)
    header = json.loads(data[_PRE.size : _PRE.size + hlen])
    fn(header)
    new_h = json.dumps(header).encode()
    out = (
        data[: _PRE.size - 8] + struct.pack("<II", len(new_h), 0) + new_h + data[_PRE.size + hlen :]
    )
    return rechecksum(out)
