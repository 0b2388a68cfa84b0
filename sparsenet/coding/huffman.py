"""Canonical, length-limited Huffman coding of integer symbol arrays, vectorised with numpy.

Why hand-written: ``dahuffman`` (the obvious library) is pure Python, builds a
non-canonical code (so its whole code table would have to be stored, not just the code
lengths), and decodes one bit at a time in a Python loop (~0.5 M symbols/s here). This
coder stores only the code lengths, encodes with array operations, and decodes without
any per-bit or per-symbol Python loop: a lookup table indexed by the next ``L`` bits gives
the code length at *every* bit position, and pointer doubling over that "next symbol
starts here" array finds all symbol starts of a chunk in ``log2(chunk)`` array passes.
Chunks of ``2**chunk_log2`` symbols start at stored bit offsets, which bounds the passes.

Stream layout (little-endian)::

    u32 n_symbols | u32 alphabet A | u8 L (longest code) | u8 chunk_log2 | u32 payload_bits
    A x u8 code lengths (0 = unused symbol)
    (ceil(n / 2**chunk_log2) - 1) x u32 chunk start bit offsets (chunk 0 starts at 0)
    ceil(payload_bits / 8) bytes of codes, MSB first

Every field is validated on decode; malformed streams raise
:class:`~sparsenet.errors.CorruptFileError` before anything large is allocated.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import CorruptFileError, SparsenetError

__all__ = [
    "MAX_ALPHABET",
    "MAX_CODE_LEN",
    "code_lengths",
    "canonical_codes",
    "encode",
    "decode",
    "encoded_bits",
    "table_bytes",
]

MAX_ALPHABET = 1 << 20
MAX_CODE_LEN = 24  # table-driven decode reads 24 bits + 7 bits of shift from a 32-bit word
DEFAULT_MAX_LEN = 16
CHUNK_LOG2 = 13  # 8192 symbols per chunk: offsets cost 32/8192 = 0.004 bits/symbol
_HEAD = struct.Struct("<IIBBI")


def _freqs(symbols: np.ndarray) -> np.ndarray:
    return np.bincount(symbols) if symbols.size else np.zeros(0, dtype=np.int64)


def code_lengths(freqs: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """Huffman code lengths for symbol frequencies, optionally limited to ``max_len`` bits.

    Parameters
    ----------
    freqs : array of int, shape (A,)
        Count of each symbol ``0..A-1``; zero means unused (length 0).
    max_len : int or None
        Longest allowed code. ``None`` gives the optimal (unlimited) Huffman lengths.
        When the optimal code is longer, lengths are clamped and the Kraft sum repaired
        by lengthening the rarest symbols, then shortened greedily from the most
        frequent ones while the Kraft inequality allows (near-optimal, always valid).

    Returns
    -------
    lengths : ndarray of uint8, shape (A,)
        A lone used symbol gets length 1, so every symbol costs at least one bit.
    """
    f = np.asarray(freqs, dtype=np.int64)
    lengths = np.zeros(f.size, dtype=np.int64)
    used = np.flatnonzero(f > 0)
    if used.size == 0:
        return lengths.astype(np.uint8)
    if used.size == 1:
        lengths[used] = 1
        return lengths.astype(np.uint8)
    # Two-queue Huffman over leaves sorted by (freq, symbol): deterministic, O(A log A).
    order = used[np.lexsort((used, f[used]))]
    leaf_w = f[order].tolist()
    m = len(leaf_w)
    parent = [0] * (2 * m - 1)
    node_w: list[int] = []
    i = j = 0  # next leaf, next internal node

    def pop() -> int:
        nonlocal i, j
        if i < m and (j >= len(node_w) or leaf_w[i] <= node_w[j]):
            i += 1
            return i - 1
        j += 1
        return m + j - 1

    for _ in range(m - 1):
        a, b = pop(), pop()
        wa = leaf_w[a] if a < m else node_w[a - m]
        wb = leaf_w[b] if b < m else node_w[b - m]
        node_w.append(wa + wb)
        parent[a] = parent[b] = m + len(node_w) - 1
    depth = [0] * (2 * m - 1)
    for node in range(2 * m - 3, -1, -1):  # parents are created after children
        depth[node] = depth[parent[node]] + 1
    lengths[order] = depth[:m]
    if max_len is not None and lengths.max() > max_len:
        if used.size > (1 << max_len):
            raise SparsenetError(
                f"max_len={max_len} cannot code {used.size} distinct symbols; "
                f"expected max_len >= {int(np.ceil(np.log2(used.size)))}"
            )
        lengths = _limit(lengths, f, order, max_len)
    return lengths.astype(np.uint8)


def _limit(lengths: np.ndarray, f: np.ndarray, order: np.ndarray, L: int) -> np.ndarray:
    """Clamp lengths to ``L`` and repair the Kraft sum (``order``: rarest first)."""
    ln = np.minimum(lengths, L)
    cap = 1 << L
    kraft = int(np.sum(np.left_shift(1, L - ln[order])))
    for s in order.tolist():  # rarest first: lengthen until the code fits
        while kraft > cap and ln[s] < L:
            ln[s] += 1
            kraft -= 1 << (L - int(ln[s]))
        if kraft <= cap:
            break
    for s in order[::-1].tolist():  # most frequent first: shorten while it still fits
        while ln[s] > 1 and kraft + (1 << (L - int(ln[s]))) <= cap:
            kraft += 1 << (L - int(ln[s]))
            ln[s] -= 1
    return ln


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for ``lengths`` (codes of equal length ascend with the symbol).

    Returns
    -------
    codes : ndarray of uint32, shape (A,); 0 for unused symbols.
    """
    ln = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(ln.size, dtype=np.int64)
    used = np.flatnonzero(ln > 0)
    if used.size == 0:
        return codes.astype(np.uint32)
    order = used[np.lexsort((used, ln[used]))]  # by (length, symbol)
    lo = ln[order]
    # code_i = (code_{i-1} + 1) << (l_i - l_{i-1}) is, in units of 2**-L, a running sum:
    # code_i = sum_{j<i} 2**(L - l_j) >> (L - l_i).
    L = int(lo.max())
    steps = np.left_shift(np.int64(1), L - lo)
    starts = np.concatenate(([0], np.cumsum(steps)[:-1]))
    codes[order] = np.right_shift(starts, L - lo)
    return codes.astype(np.uint32)


def encoded_bits(symbols: np.ndarray, lengths: np.ndarray) -> int:
    """Payload bits of ``symbols`` under code ``lengths`` (no header)."""
    return int(np.asarray(lengths, dtype=np.int64)[np.asarray(symbols, dtype=np.int64)].sum())


def encode(symbols: np.ndarray, max_len: int = DEFAULT_MAX_LEN) -> bytes:
    """Encode a 1-D array of non-negative integers (< 2**20) as a canonical Huffman stream."""
    s = np.asarray(symbols)
    if s.ndim != 1 or (
        s.size and (s.dtype.kind not in "iu" or s.min() < 0 or s.max() >= MAX_ALPHABET)
    ):
        raise SparsenetError(
            f"huffman.encode: expected a 1-D integer array with values in [0, {MAX_ALPHABET}), "
            f"got shape {s.shape} dtype {s.dtype}"
        )
    s = s.astype(np.int64, copy=False)
    f = _freqs(s)
    distinct = int(np.count_nonzero(f))
    limit = max(int(max_len), int(np.ceil(np.log2(distinct))) if distinct > 1 else 1)
    if limit > MAX_CODE_LEN:
        raise SparsenetError(f"huffman.encode: max_len={max_len} exceeds {MAX_CODE_LEN}")
    lengths = code_lengths(f, limit)
    codes = canonical_codes(lengths).astype(np.int64)
    L = int(lengths.max()) if lengths.size else 0
    ls = lengths.astype(np.int64)[s]  # (n,) code length of each symbol
    total = int(ls.sum())
    ends = np.cumsum(ls)
    starts = ends - ls
    n = s.size
    chunk = 1 << CHUNK_LOG2
    offsets = starts[chunk::chunk].astype(np.uint32)
    # Expand each code to its bits: bit k of symbol i is (code >> (len - 1 - k)) & 1.
    owner = np.repeat(np.arange(n), ls)  # (total,)
    k = np.arange(total, dtype=np.int64) - starts[owner]
    bits = (np.right_shift(codes[s][owner], ls[owner] - 1 - k) & 1).astype(np.uint8)
    payload = np.packbits(bits).tobytes()
    head = _HEAD.pack(n, lengths.size, L, CHUNK_LOG2, total)
    return head + lengths.tobytes() + offsets.astype("<u4").tobytes() + payload


def table_bytes(data: bytes) -> int:
    """Bytes of ``data`` (a valid stream) that are not code payload: header, lengths, offsets."""
    n, A, _, clog2, total = _HEAD.unpack_from(data, 0)
    return _HEAD.size + A + 4 * max(0, -(-n >> clog2) - 1)


def _parse(
    data: bytes, expected_n: int | None
) -> tuple[int, np.ndarray, int, int, np.ndarray, bytes, int]:
    if len(data) < _HEAD.size:
        raise CorruptFileError(
            f"huffman stream: {len(data)} bytes, shorter than its {_HEAD.size}-byte header"
        )
    n, A, L, clog2, total = _HEAD.unpack_from(data, 0)
    if expected_n is not None and n != expected_n:
        raise CorruptFileError(f"huffman stream: holds {n} symbols, header declares {expected_n}")
    if A > MAX_ALPHABET or L > MAX_CODE_LEN or not 1 <= clog2 <= 24:
        raise CorruptFileError(
            f"huffman stream: alphabet {A} (max {MAX_ALPHABET}), longest code {L} "
            f"(max {MAX_CODE_LEN}) or chunk 2**{clog2} out of range"
        )
    n_off = max(0, -(-n >> clog2) - 1)
    need = _HEAD.size + A + 4 * n_off + (total + 7) // 8
    if len(data) != need:
        raise CorruptFileError(f"huffman stream: {len(data)} bytes, its header implies {need}")
    if n > total or (n == 0) != (total == 0):
        raise CorruptFileError(f"huffman stream: {n} symbols cannot take {total} bits")
    pos = _HEAD.size
    lengths = np.frombuffer(data, dtype=np.uint8, count=A, offset=pos).astype(np.int64)
    pos += A
    offsets = np.frombuffer(data, dtype="<u4", count=n_off, offset=pos).astype(np.int64)
    pos += 4 * n_off
    if n and (lengths.max() != L or L == 0):
        raise CorruptFileError(
            f"huffman stream: longest code length {lengths.max()} != declared {L}"
        )
    if n and int(np.sum(np.left_shift(np.int64(1), L - lengths[lengths > 0]))) > (1 << L):
        raise CorruptFileError("huffman stream: code lengths violate the Kraft inequality")
    if n_off and (np.any(np.diff(offsets) <= 0) or offsets[0] <= 0 or offsets[-1] >= total):
        raise CorruptFileError(
            "huffman stream: chunk offsets are not increasing inside the payload"
        )
    return n, lengths, L, clog2, offsets, data[pos:], total


def decode(data: bytes, expected_n: int | None = None) -> np.ndarray:
    """Decode a stream from :func:`encode`; returns int64 symbols, shape (n,).

    Raises :class:`CorruptFileError` on any inconsistency (including ``expected_n``).
    """
    n, lengths, L, clog2, offsets, payload, total = _parse(bytes(data), expected_n)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Decode table over all L-bit windows: symbol and code length (0 = no such code).
    used = np.flatnonzero(lengths > 0)
    order = used[np.lexsort((used, lengths[used]))]
    span = np.left_shift(np.int64(1), L - lengths[order])
    tab_sym = np.zeros(1 << L, dtype=np.int32)
    tab_len = np.zeros(1 << L, dtype=np.int32)
    filled = int(span.sum())
    tab_sym[:filled] = np.repeat(order, span)
    tab_len[:filled] = np.repeat(lengths[order], span)
    # The L-bit window starting at every bit position p < total, MSB first.
    buf = np.frombuffer(payload + b"\0\0\0\0", dtype=np.uint8).astype(np.uint32)
    nbytes = (total + 7) // 8
    word = (
        (buf[:nbytes] << 24)
        | (buf[1 : nbytes + 1] << 16)
        | (buf[2 : nbytes + 2] << 8)
        | buf[3 : nbytes + 3]
    )
    shift = np.tile(np.arange(8, dtype=np.uint32), nbytes)[:total]
    win = (np.repeat(word, 8)[:total] << shift) >> np.uint32(32 - L)  # (total,)
    clen = tab_len[win]
    # nxt[p] = start of the symbol after the one starting at p; `total` = end,
    # `total + 1` = error sink (no code here, or a code running past the end).
    sink = total + 1
    nxt = np.arange(total, dtype=np.int32) + clen
    nxt[(clen == 0) | (nxt > total)] = sink
    nxt = np.concatenate((nxt, np.array([sink, sink], dtype=np.int32)))
    starts = np.concatenate(([0], offsets)).astype(np.int32)
    pos = None
    for extra in (48, 400):  # symbols a lane may walk past the next lane's start to resync
        pos = _follow_lanes(nxt, total, n, extra)
        if pos is not None:
            break
    if pos is None:  # lanes did not resynchronise (or the stream is corrupt)
        pos = _pointer_doubling(nxt, starts, clog2, n)
    if np.any(pos >= total):
        raise CorruptFileError("huffman stream: payload does not decode to the declared symbols")
    ends = nxt[pos]
    last = np.minimum(np.arange(1, starts.size + 1) << clog2, n) - 1
    want_end = np.concatenate((starts[1:], [total]))
    if np.any(ends[last] != want_end):
        raise CorruptFileError("huffman stream: chunks do not end at the stored offsets")
    return tab_sym[win[pos]].astype(np.int64)


def _pointer_doubling(nxt: np.ndarray, starts: np.ndarray, clog2: int, n: int) -> np.ndarray:
    """Start of every symbol: symbol j of chunk c starts at ``nxt^(j)(starts[c])``.

    Always correct; ``log2(chunk)`` passes over the whole ``nxt`` array.
    """
    chunk = 1 << clog2
    first = np.repeat(np.arange(starts.size) * chunk, chunk)[:n]
    j = np.arange(n) - first
    pos = starts[first >> clog2]
    jump = nxt
    for k in range(int(j.max()).bit_length()):
        take = ((j >> k) & 1).astype(bool)
        pos = np.where(take, jump[pos], pos)
        if (1 << (k + 1)) <= j.max():
            jump = jump[jump]
    return pos


def _follow_lanes(nxt: np.ndarray, total: int, n: int, extra: int = 32) -> np.ndarray | None:
    """Start of every symbol by walking ``nxt`` from equally spaced bit positions at once.

    Lane ``j`` starts at bit ``j * seg`` (maybe mid-code) and walks until ``extra`` symbols
    past the next lane's start. Huffman codes resynchronise quickly: lane ``j`` soon lands
    on a position that lane ``j+1`` (or a later one) also visited inside its own segment,
    and from there both paths are the same. The true path is lane 0, then the lane it
    synchronises with, and so on. Returns None when some lane on that path never
    synchronises (e.g. fixed-length codes) or the stream is inconsistent; the caller then
    falls back to :func:`_pointer_doubling`, which also produces the precise error.
    """
    seg = max(256, -(-total // 4096))
    m = -(-total // seg)
    starts = np.arange(m, dtype=np.int64) * seg
    nexts = np.append(starts[1:], total)
    p = starts.astype(nxt.dtype)
    rows = [p]
    while True:
        for _ in range(8):
            p = nxt[p]
            rows.append(p)
        if bool((p >= nexts).all()) or len(rows) > seg + 8:
            break
    for _ in range(extra):
        p = nxt[p]
        rows.append(p)
    hist = np.stack(rows)  # (T, m) bit position of each lane after t steps
    # Mark each lane's own path (positions inside its own segment) with lane and step.
    flat = np.flatnonzero(hist < nexts)  # flat index t * m + j
    own_pos = hist.ravel()[flat]
    own_lane = np.full(total + 2, -1, dtype=np.int32)
    own_step = np.zeros(total + 2, dtype=np.int32)
    own_lane[own_pos] = flat % m
    own_step[own_pos] = flat // m
    # A lane exits where it first reaches another lane's own path, or the end of the stream.
    exits = ((hist >= nexts) & (own_lane[hist] >= 0)) | (hist == total)
    t_exit = exits.argmax(axis=0)
    ok = exits.any(axis=0).tolist()
    exit_pos = hist[t_exit, np.arange(m)].tolist()
    t_exit_l = t_exit.tolist()
    chain, t_in, t_out = [], [], []
    j, entry = 0, 0
    for _ in range(m):
        if not ok[j] or t_exit_l[j] < entry:
            return None
        chain.append(j)
        t_in.append(entry)
        t_out.append(t_exit_l[j])
        x = exit_pos[j]
        if x == total:
            break
        j, entry = int(own_lane[x]), int(own_step[x])
    else:
        return None
    counts = np.array(t_out) - np.array(t_in)
    if int(counts.sum()) != n:
        return None
    base = np.repeat(np.cumsum(counts) - counts, counts)
    t_idx = np.arange(n) - base + np.repeat(t_in, counts)
    return hist[t_idx, np.repeat(chain, counts)]
