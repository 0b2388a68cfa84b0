import dahuffman
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsenet.coding import huffman
from sparsenet.errors import CorruptFileError, SparsenetError

symbols = hnp.arrays(
    np.int64,
    st.integers(0, 3000),
    elements=st.one_of(st.integers(0, 7), st.integers(0, 300), st.integers(0, 70000)),
)


def roundtrip(x: np.ndarray, **kw) -> bytes:
    data = huffman.encode(x, **kw)
    y = huffman.decode(data, expected_n=x.size)
    assert y.dtype == np.int64 and np.array_equal(y, x)
    return data


@settings(max_examples=60, deadline=None)
@given(symbols)
def test_roundtrip_property(x):
    roundtrip(x)


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 20000), elements=st.integers(0, 40)), st.integers(6, 12))
def test_length_limit_roundtrip_and_kraft(x, max_len):
    data = roundtrip(x, max_len=max_len)
    n, A, L, _, _ = huffman._HEAD.unpack_from(data, 0)
    lengths = np.frombuffer(data, np.uint8, A, huffman._HEAD.size).astype(np.int64)
    assert L <= max_len and lengths.max() == L
    assert np.sum(2.0 ** -lengths[lengths > 0]) <= 1.0


@pytest.mark.parametrize(
    "x",
    [
        np.zeros(0, np.int64),
        np.array([5]),
        np.full(1000, 3),
        np.arange(1 << 16),  # a full 2**16 alphabet
        np.random.default_rng(0).integers(0, 1 << 16, 50000),
        np.random.default_rng(1).geometric(0.05, 40000),  # long chunked stream
    ],
    ids=["empty", "one", "constant", "alphabet16", "random16", "geometric"],
)
def test_roundtrip_edge_cases(x):
    roundtrip(np.asarray(x, dtype=np.int64))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=300))
def test_unlimited_lengths_match_dahuffman_optimum(freqs):
    f = np.array(freqs)
    ours = int((huffman.code_lengths(f).astype(np.int64) * f).sum())
    # eof = an existing symbol, so dahuffman adds no extra end-of-file symbol.
    table = dahuffman.HuffmanCodec.from_frequencies(dict(enumerate(freqs)), eof=0).get_code_table()
    theirs = sum(table[s][0] * fr for s, fr in enumerate(freqs))
    assert ours == theirs


def test_fibonacci_frequencies_need_the_limit():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    f = np.array(fib)
    assert huffman.code_lengths(f).max() == 29  # optimal code is 29 deep
    limited = huffman.code_lengths(f, max_len=12).astype(np.int64)
    assert limited.max() == 12 and np.sum(2.0**-limited) <= 1.0
    x = np.repeat(np.arange(30), np.minimum(f, 500))
    roundtrip(x, max_len=12)


def test_canonical_codes_are_prefix_free_and_sorted():
    lengths = huffman.code_lengths(np.array([5, 9, 12, 13, 16, 45, 0, 1]))
    codes = huffman.canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths, strict=True) if n]
    for a in words:
        for b in words:
            assert a == b or not b.startswith(a)


def test_rejects_bad_input():
    with pytest.raises(SparsenetError):
        huffman.encode(np.array([-1, 2]))
    with pytest.raises(SparsenetError):
        huffman.encode(np.array([0.5]))


def test_corrupt_streams_raise_corrupt_file_error():
    data = huffman.encode(np.random.default_rng(0).integers(0, 20, 2000))
    with pytest.raises(CorruptFileError):
        huffman.decode(data, expected_n=1999)
    for cut in (0, 5, len(data) - 1):
        with pytest.raises(CorruptFileError):
            huffman.decode(data[:cut])
    rng = np.random.default_rng(0)
    for _ in range(300):  # no checksum here: garbage either decodes or raises CorruptFileError
        b = bytearray(data)
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        try:
            huffman.decode(bytes(b))
        except CorruptFileError:
            pass


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 5000), elements=st.integers(0, 50)))
def test_lane_decoder_and_pointer_doubling_agree(x):
    data = huffman.encode(x)
    fast = huffman.decode(data)
    original = huffman._follow_lanes
    try:
        huffman._follow_lanes = lambda *a, **k: None  # force the fallback path
        slow = huffman.decode(data)
    finally:
        huffman._follow_lanes = original
    assert np.array_equal(fast, x) and np.array_equal(slow, x)


def test_fixed_length_codes_that_never_resynchronise():
    # 3-bit fixed-length code: lanes start at multiples of 256 bits, which is not a
    # multiple of 3, so most lanes stay misaligned and the fallback must take over.
    x = np.random.default_rng(3).integers(0, 8, 3000)
    data = huffman.encode(x)
    assert set(np.frombuffer(data, np.uint8, 8, huffman._HEAD.size)) == {3}
    assert np.array_equal(huffman.decode(data), x)
