"""Build hostile .snn files: recompute every checksum after tampering."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _header_json(hbytes: bytes, flags: int) -> dict[str, Any]:
    """The header dict from its stored bytes (inflated when flag bit 0 says so)."""
    from sparsenet.coding.container import FLAG_DEFLATE

    return json.loads(zlib.decompress(hbytes) if flags & FLAG_DEFLATE else hbytes)


def _header_bytes(header: dict[str, Any], flags: int) -> bytes:
    from sparsenet.coding.container import FLAG_DEFLATE

    text = json.dumps(header, separators=(",", ":")).encode()
    return zlib.compress(text, 9) if flags & FLAG_DEFLATE else text


def rechecksum(data: bytes) -> bytes:
    """Recompute every CRC and the trailer of a (tampered) .snn file, as a hostile writer would."""
    from sparsenet.coding.container import _PRE, _TRAIL, END_MAGIC

    magic, version, flags, hlen, _ = _PRE.unpack_from(data, 0)
    hbytes = data[_PRE.size : _PRE.size + hlen]
    body_end = len(data) - _TRAIL.size
    start = _PRE.size + hlen
    try:
        header = _header_json(hbytes, flags)
        for s in header["sections"]:
            s["crc32"] = zlib.crc32(data[start + s["offset"] : start + s["offset"] + s["length"]])
        new_h = _header_bytes(header, flags)
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

    _, _, flags, hlen, _ = _PRE.unpack_from(data, 0)
    header = _header_json(data[_PRE.size : _PRE.size + hlen], flags)
    fn(header)
    new_h = _header_bytes(header, flags)
    out = (
        data[: _PRE.size - 8] + struct.pack("<II", len(new_h), 0) + new_h + data[_PRE.size + hlen :]
    )
    return rechecksum(out)


def prune_and_share(
    model: nn.Module, density: float = 0.1, k: int = 16, seed: int = 0
) -> nn.Module:
    """Zero all but the largest ``density`` of each Linear/Conv weight, round the rest to k values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight
                w.add_(1e-3 * torch.randn(w.shape, generator=g))
                keep = max(1, int(density * w.numel()))
                thr = w.abs().flatten().kthvalue(w.numel() - keep + 1).values
                nz = w.abs() >= thr
                cb = torch.linspace(float(w.min()), float(w.max()), k)
                cb = cb[cb != 0]
                q = cb[(w[..., None] - cb).abs().argmin(-1)]
                w.copy_(torch.where(nz, q, torch.zeros(())))
    return model
