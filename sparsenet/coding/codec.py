"""One weight tensor <-> its stored representation (mode, codebook, coded streams).

Modes, chosen per layer as the smallest that applies:

``dense``       neither pruned nor shared: float32 values, row-major.
``codebook``    shared, not worth indexing sparsely: one index symbol per weight (0 = zero).
``sparse``      pruned and shared: gap symbols + index symbols (Deep Compression).
``sparse_raw``  pruned, not shared: gap symbols + float32 value per entry (0.0 = filler).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import CorruptFileError, SparsenetError
from . import ans, huffman
from .sparse_index import codebook_symbols, csr_from_positions, gap_stream, positions_from_gaps

__all__ = ["CODERS", "MODES", "LayerCode", "encode_layer", "decode_layer", "shared_codebook"]

CODERS: dict[str, ModuleType] = {"huffman": huffman, "ans": ans}
MODES = ("dense", "codebook", "sparse", "sparse_raw")
LAYOUTS = ("auto", "sparse")
# Which streams (sections) each mode stores.
STREAMS = {
    "dense": ("values",),
    "codebook": ("index",),
    "sparse": ("gaps", "index"),
    "sparse_raw": ("gaps", "values"),
}


@dataclass
class LayerCode:
    """A weight tensor in stored form, with its decoded symbol streams for accounting.

    ``sections`` maps stream name ("gaps", "index", "values") to the bytes in the file.
    ``gaps`` (entries,), ``symbols`` (entries,) and ``values`` (entries,) hold the
    decoded streams of the mode (None where the mode has no such stream).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    mode: str
    coder: str
    nnz: int
    entries: int
    bits: int | None = None
    index_bits: int | None = None
    codebook: np.ndarray | None = None
    sections: dict[str, bytes] = field(default_factory=dict)
    gaps: np.ndarray | None = None
    symbols: np.ndarray | None = None
    values: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def stored_bytes(self) -> int:
        cb = 0 if self.codebook is None else 4 * self.codebook.size
        return sum(len(b) for b in self.sections.values()) + cb

    def header(self) -> dict:
        """JSON-able description (section indices are added by the container)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "mode": self.mode,
            "coder": self.coder,
            "nnz": self.nnz,
            "entries": self.entries,
            "density": self.nnz / self.numel if self.numel else 0.0,
            "bits": self.bits,
            "index_bits": self.index_bits,
            "codebook": None if self.codebook is None else codebook_to_text(self.codebook),
        }

    # -- decoded views ---------------------------------------------------------------
    def stream(self, name: str) -> np.ndarray:
        """The decoded ``"gaps"``, ``"index"`` or ``"values"`` stream (must exist in this mode)."""
        arr = {"gaps": self.gaps, "index": self.symbols, "values": self.values}[name]
        if arr is None:
            raise SparsenetError(f"{self.name}: a {self.mode} layer has no {name} stream")
        return arr

    def real_positions(self) -> np.ndarray:
        """Flat row-major positions of the non-zeros, shape (nnz,)."""
        if self.mode == "dense":
            return np.flatnonzero(self.stream("values"))
        if self.mode == "codebook":
            return np.flatnonzero(self.stream("index"))
        pos = positions_from_gaps(self.stream("gaps"))
        keep = self.stream("index") != 0 if self.mode == "sparse" else self.stream("values") != 0
        return pos[keep]

    def real_values(self) -> np.ndarray:
        """float32 values of the non-zeros, in :meth:`real_positions` order."""
        if self.mode in ("dense", "sparse_raw"):
            v = self.stream("values")
            return v[v != 0]
        s = self.stream("index")
        cb = self.codebook if self.codebook is not None else np.zeros(0, dtype=np.float32)
        return cb[s[s != 0] - 1]

    def dense(self) -> np.ndarray:
        """The weight tensor, float32 with :attr:`shape`."""
        if self.mode == "dense":
            return self.stream("values").reshape(self.shape)
        out = np.zeros(self.numel, dtype=np.float32)
        out[self.real_positions()] = self.real_values()
        return out.reshape(self.shape)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(crow (rows+1,), col (nnz,), values (nnz,))`` of the ``(shape[0], rest)`` matrix."""
        rows = self.shape[0]
        cols = self.numel // rows if rows else 0
        pos = self.real_positions()
        crow, col = csr_from_positions(pos, (rows, cols))
        return crow, col, self.real_values().astype(np.float32)


def codebook_to_text(codebook: np.ndarray) -> str:
    """The codebook as base64 of its float32 little-endian bytes (exact, 4/3 bytes per bit)."""
    return base64.b64encode(np.asarray(codebook, dtype="<f4").tobytes()).decode("ascii")


def codebook_from_text(text: Any, max_size: int = 1 << 16) -> np.ndarray:
    """Inverse of :func:`codebook_to_text`; CorruptFileError unless <= max_size finite values."""
    ok = isinstance(text, str) and len(text) <= 4 * (4 * max_size + 2) // 3 + 4
    raw = b""
    if ok:
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            ok = False
    ok = ok and len(raw) % 4 == 0 and len(raw) // 4 <= max_size
    cb = np.frombuffer(raw, dtype="<f4").astype(np.float32) if ok else np.zeros(0, np.float32)
    if not ok or not np.all(np.isfinite(cb)):
        raise CorruptFileError(
            f"codebook {str(text)[:40]!r} is not base64 of at most {max_size} finite float32 values"
        )
    return cb


def shared_codebook(
    values: np.ndarray, bits: int, centroids: np.ndarray | None
) -> np.ndarray | None:
    """The sorted float32 codebook covering ``values`` exactly with <= 2**bits entries, or None."""
    candidates = []
    if centroids is not None:
        c = np.asarray(centroids, dtype=np.float32).ravel()
        candidates.append(np.unique(c[np.isfinite(c) & (c != 0)]))
    if values.size <= (1 << 20):
        candidates.append(np.unique(values))
    else:
        candidates.append(np.unique(values[: 1 << 20]))
    for cb in candidates:
        if (
            cb.size <= (1 << bits)
            and np.all(np.isfinite(cb))
            and codebook_symbols(values, cb) is not None
        ):
            return cb.astype(np.float32)
    return None


def _code(coder: str, stream: str, arr: Any) -> bytes:
    if stream == "values":
        return np.asarray(arr, dtype="<f4").tobytes()
    return CODERS[coder].encode(arr)


def encode_layer(
    name: str,
    kind: str,
    weight: np.ndarray,
    bits: int,
    index_bits: int | Sequence[int],
    coder: str,
    centroids: np.ndarray | None = None,
    layout: str = "auto",
) -> LayerCode:
    """Encode one float32 weight tensor, choosing the smallest applicable mode.

    Parameters
    ----------
    weight : ndarray of float32, any shape (row-major order is the storage order)
    bits : int
        Shared-weight index bits: a codebook may hold at most ``2**bits`` values.
    index_bits : int or sequence of int
        Gap bits ``b`` of the sparse index; given several, each is tried and the smallest
        encoding kept (the codebook and the non-sparse modes are built once).
    centroids : ndarray, optional
        A weight-sharing parametrisation's centroids (used as the codebook if they cover
        every non-zero exactly).
    layout : "auto" or "sparse"
        ``"auto"`` keeps the smallest applicable mode; ``"sparse"`` always uses Deep
        Compression's gap + index layout for a pruned layer.
    """
    if layout not in LAYOUTS:
        raise SparsenetError(f"layout={layout!r}; expected one of {LAYOUTS}")
    if coder not in CODERS:
        raise SparsenetError(f"unknown coder {coder!r}; expected one of {sorted(CODERS)}")
    widths = [index_bits] if isinstance(index_bits, int) else list(index_bits)
    if not 1 <= bits <= 16 or not widths or not all(1 <= b <= 16 for b in widths):
        raise SparsenetError(f"{name}: weight_bits={bits}, gap_bits={index_bits}; expected 1..16")
    w = np.ascontiguousarray(weight, dtype=np.float32)
    flat = w.ravel()
    pos = np.flatnonzero(flat)
    vals = flat[pos]
    cb = shared_codebook(vals, bits, centroids)
    base: dict[str, Any] = dict(
        name=name, kind=kind, shape=tuple(int(s) for s in w.shape), coder=coder, nnz=int(pos.size)
    )
    options: list[LayerCode] = []
    sym = codebook_symbols(vals, cb) if cb is not None else None
    if cb is not None and sym is not None and sym.size:
        # Drop centroids no weight uses (k-means at 8 bits on a few hundred weights leaves
        # many): the codebook shrinks, the symbols are renumbered, every value is unchanged.
        used = np.unique(sym)
        if used.size < cb.size:
            remap = np.zeros(cb.size + 1, dtype=np.int64)
            remap[used] = np.arange(1, used.size + 1)
            cb, sym = cb[used - 1], remap[sym]
    if cb is not None and sym is not None:
        all_sym = np.zeros(flat.size, dtype=np.int64)
        all_sym[pos] = sym
        options.append(
            LayerCode(
                mode="codebook", entries=flat.size, bits=bits, codebook=cb, symbols=all_sym, **base
            )
        )
    else:
        options.append(LayerCode(mode="dense", entries=flat.size, values=flat.copy(), **base))
    shared = cb is not None and sym is not None
    for ib in widths if pos.size < flat.size else []:
        gaps, real = gap_stream(pos, ib)
        stream = np.zeros(gaps.size, dtype=np.int64 if shared else np.float32)
        stream[real] = sym if sym is not None and shared else vals
        options.append(
            LayerCode(
                mode="sparse" if shared else "sparse_raw",
                entries=gaps.size,
                bits=bits if shared else None,
                index_bits=ib,
                codebook=cb if shared else None,
                gaps=gaps,
                symbols=stream if shared else None,
                values=None if shared else stream,
                **base,
            )
        )
    if layout == "sparse" and len(options) > 1:
        options = options[1:]  # drop the non-sparse mode
    for opt in options:
        streams = {"gaps": opt.gaps, "index": opt.symbols, "values": opt.values}
        opt.sections = {s: _code(coder, s, streams[s]) for s in STREAMS[opt.mode]}
    return min(options, key=lambda o: o.stored_bytes)


def decode_layer(meta: dict, sections: dict[str, bytes], values: bool = True) -> LayerCode:
    """Rebuild a :class:`LayerCode` from validated header ``meta`` and its section bytes.

    ``meta`` must already be type-checked (see ``sparsenet.coding.header._check_layer``);
    this checks the streams against it and raises :class:`CorruptFileError` on mismatch.
    ``values=False`` leaves :attr:`LayerCode.values` unset: a ``values`` section (float32
    weights as stored) is then only checked, never copied, and only the gap and index
    symbol streams are decoded (what size accounting needs).
    """
    name, mode, coder = meta["name"], meta["mode"], meta["coder"]
    shape = tuple(meta["shape"])
    numel = int(np.prod(shape, dtype=np.int64))
    entries, nnz = meta["entries"], meta["nnz"]
    lc = LayerCode(
        name=name,
        kind=meta["kind"],
        shape=shape,
        mode=mode,
        coder=coder,
        nnz=nnz,
        entries=entries,
        bits=meta["bits"],
        index_bits=meta["index_bits"],
        codebook=None if meta["codebook"] is None else codebook_from_text(meta["codebook"]),
        sections=sections,
    )
    where = f"layer {name!r}"
    stored = None
    if "values" in sections:
        if len(sections["values"]) != 4 * entries:
            raise CorruptFileError(
                f"{where}: values section holds {len(sections['values'])} bytes, expected {4 * entries}"
            )
        stored = np.frombuffer(sections["values"], dtype="<f4")  # a view, no copy
        if values:
            lc.values = stored.astype(np.float32)
    dec = CODERS[coder].decode
    if "gaps" in sections:
        lc.gaps = dec(sections["gaps"], entries)
        if entries and (
            lc.gaps.max() >= 1 << int(lc.index_bits or 0)
            or positions_from_gaps(lc.gaps)[-1] >= numel
        ):
            raise CorruptFileError(
                f"{where}: gap symbols exceed {lc.index_bits} bits or run past {numel} weights"
            )
    if "index" in sections:
        lc.symbols = dec(sections["index"], entries)
        k = lc.codebook.size if lc.codebook is not None else 0
        if entries and lc.symbols.max() > k:
            raise CorruptFileError(
                f"{where}: index symbol {lc.symbols.max()} outside a codebook of {k}"
            )
    counted = lc.symbols if lc.symbols is not None else stored
    if counted is None:  # every mode stores an index or a values stream (STREAMS)
        raise CorruptFileError(f"{where}: a {mode} layer without index or values stream")
    got = int(np.count_nonzero(counted))
    if got != nnz:
        raise CorruptFileError(f"{where}: streams hold {got} non-zeros, header declares {nnz}")
    return lc
