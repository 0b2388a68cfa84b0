"""Asymmetric numeral systems (ANS) coding of integer symbol arrays via ``constriction``.

The stream's model is the symbol histogram quantised to integer frequencies summing to
``2**PRECISION``; the same float64 probabilities are rebuilt from those integers on both
sides and passed to ``constriction.stream.model.Categorical(..., perfect=False)``, so
encoder and decoder use a bit-identical model. A stream with a single used symbol gets a
phantom neighbour of frequency 1, so every symbol costs a little information and a short
payload cannot claim to hold an unbounded number of symbols.

Stream layout (little-endian)::

    u32 n_symbols | u32 alphabet A | u8 precision P
    A x u16 frequencies (u32 when P > 16), summing to 2**P
    (P = 15, or 22 for streams with more than 2**12 distinct symbols)
    u32 words of the ANS stack (constriction's compressed representation)
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import CorruptFileError, SparsenetError

__all__ = ["PRECISION", "MAX_ALPHABET", "quantize_frequencies", "encode", "decode", "table_bytes"]

PRECISION = 15
WIDE_PRECISION = 22
MAX_ALPHABET = 1 << 17
_HEAD = struct.Struct("<IIB")
# Each symbol costs at least -log2(1 - 2**-P) > 2**-P bits, so a payload of b bits holds
# at most about (b + 64) * 2**P symbols (64: the coder's initial state).


def _categorical(freqs: np.ndarray, prec: int) -> object:
    import constriction

    probs = freqs.astype(np.float64) / float(1 << prec)
    return constriction.stream.model.Categorical(probs, perfect=False)


def quantize_frequencies(counts: np.ndarray, prec: int = PRECISION) -> np.ndarray:
    """Integer frequencies summing to ``2**prec``, >= 1 for every used symbol.

    Parameters
    ----------
    counts : array of int, shape (A,)
    prec : int
        log2 of the frequency total.

    Returns
    -------
    freqs : ndarray of int64, shape (A',) where A' >= A (a phantom symbol may be added).
    """
    c = np.asarray(counts, dtype=np.int64)
    total = 1 << prec
    used = np.flatnonzero(c)
    if used.size == 0:
        return np.zeros(0, dtype=np.int64)
    if used.size == 1:
        s = int(used[0])
        f = np.zeros(max(c.size, s + 2), dtype=np.int64)
        f[s], f[s + 1] = total - 1, 1
        return f
    if used.size > total:
        raise SparsenetError(f"ans: {used.size} distinct symbols exceed 2**{prec}")
    f = np.zeros(c.size, dtype=np.int64)
    f[used] = np.maximum(1, np.floor(c[used] * total / c.sum()).astype(np.int64))
    diff = total - int(f.sum())
    # Hand the remainder to (or take it from) the most frequent symbols, keeping each >= 1.
    order = used[np.argsort(-c[used], kind="stable")]
    while diff != 0:
        for s in order.tolist():
            if diff > 0:
                f[s] += 1
                diff -= 1
            elif f[s] > 1:
                f[s] -= 1
                diff += 1
            if diff == 0:
                break
    return f


def encode(symbols: np.ndarray) -> bytes:
    """Encode a 1-D array of non-negative integers (< 2**16) with ANS."""
    import constriction

    s = np.asarray(symbols)
    if s.ndim != 1 or (
        s.size and (s.dtype.kind not in "iu" or s.min() < 0 or s.max() >= MAX_ALPHABET - 1)
    ):
        raise SparsenetError(
            f"ans.encode: expected a 1-D integer array with values in [0, {MAX_ALPHABET - 1}), "
            f"got shape {s.shape} dtype {s.dtype}"
        )
    if s.size == 0:
        return _HEAD.pack(0, 0, PRECISION)
    counts = np.bincount(s.astype(np.int64))
    prec = PRECISION if np.count_nonzero(counts) <= 1 << (PRECISION - 3) else WIDE_PRECISION
    freqs = quantize_frequencies(counts, prec)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(s.astype(np.int32), _categorical(freqs, prec))
    words = np.asarray(coder.get_compressed(), dtype="<u4")
    table = freqs.astype(_freq_dtype(prec)).tobytes()
    return _HEAD.pack(s.size, freqs.size, prec) + table + words.tobytes()


def table_bytes(data: bytes) -> int:
    """Bytes of ``data`` (a valid stream) that are not ANS payload: header and frequencies."""
    _, A, prec = _HEAD.unpack_from(data, 0)
    return _HEAD.size + np.dtype(_freq_dtype(prec)).itemsize * A


def _freq_dtype(prec: int) -> str:
    return "<u2" if prec <= 16 else "<u4"


def decode(data: bytes, expected_n: int | None = None) -> np.ndarray:
    """Decode a stream from :func:`encode`; returns int64 symbols, shape (n,)."""
    import constriction

    data = bytes(data)
    if len(data) < _HEAD.size:
        raise CorruptFileError(
            f"ans stream: {len(data)} bytes, shorter than its {_HEAD.size}-byte header"
        )
    n, A, prec = _HEAD.unpack_from(data, 0)
    if expected_n is not None and n != expected_n:
        raise CorruptFileError(f"ans stream: holds {n} symbols, header declares {expected_n}")
    if prec not in (PRECISION, WIDE_PRECISION) or A > MAX_ALPHABET:
        raise CorruptFileError(
            f"ans stream: precision {prec} (expected {PRECISION} or {WIDE_PRECISION}) "
            f"or alphabet {A} (max {MAX_ALPHABET}) out of range"
        )
    fsize = np.dtype(_freq_dtype(prec)).itemsize
    rest = len(data) - _HEAD.size - fsize * A
    if rest < 0 or rest % 4:
        raise CorruptFileError(
            f"ans stream: {len(data)} bytes do not fit its header (alphabet {A})"
        )
    if n == 0:
        if A or rest:
            raise CorruptFileError("ans stream: an empty stream carries a model or payload")
        return np.zeros(0, dtype=np.int64)
    if n > (rest * 8 + 64) << prec:
        raise CorruptFileError(f"ans stream: {rest} payload bytes cannot hold {n} symbols")
    freqs = np.frombuffer(data, dtype=_freq_dtype(prec), count=A, offset=_HEAD.size).astype(
        np.int64
    )
    if int(freqs.sum()) != 1 << prec or np.count_nonzero(freqs) < 2:
        raise CorruptFileError(f"ans stream: frequencies sum to {freqs.sum()}, expected 2**{prec}")
    words = np.frombuffer(data, dtype="<u4", offset=_HEAD.size + fsize * A).astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        out = np.asarray(coder.decode(_categorical(freqs, prec), n), dtype=np.int64)
        ok = coder.is_empty()
    except BaseException as exc:  # noqa: BLE001 - constriction raises on malformed input
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise CorruptFileError(f"ans stream: payload does not decode ({exc})") from None
    if not ok or np.any(freqs[out] == 0):
        raise CorruptFileError(
            "ans stream: payload does not decode to exactly the declared symbols"
        )
    return out
