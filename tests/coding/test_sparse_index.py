import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsenet.coding.codec import decode_layer, encode_layer
from sparsenet.coding.sparse_index import csr_from_positions, gap_stream, positions_from_gaps


def test_han_figure_2_example():
    # Deep Compression Fig. 2: 3-bit gaps, a non-zero 15 positions after the previous one
    # needs one filler entry (gap 8) before it.
    gaps, real = gap_stream(np.array([1, 4, 19]), index_bits=3)
    assert gaps.tolist() == [1, 2, 7, 6]  # d-1 for d = 2, 3, filler 8, 7
    assert real.tolist() == [0, 1, 3]
    assert positions_from_gaps(gaps).tolist() == [1, 4, 12, 19]


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.bool_, st.integers(1, 3000)), st.integers(1, 8))
def test_gaps_roundtrip_and_fit_in_b_bits(mask, b):
    pos = np.flatnonzero(mask)
    gaps, real = gap_stream(pos, b)
    assert gaps.size == 0 or gaps.max() < 1 << b
    assert np.array_equal(positions_from_gaps(gaps)[real], pos)
    fillers = gaps.size - pos.size
    d = np.diff(np.concatenate(([-1], pos)))
    assert fillers == int(((d - 1) >> b).sum())


@pytest.mark.parametrize("coder", ["huffman", "ans"])
@pytest.mark.parametrize("layout", ["auto", "sparse"])
@pytest.mark.parametrize(
    "case", ["pruned_shared", "pruned_raw", "dense_raw", "dense_shared", "all_zero"]
)
def test_layer_roundtrip_every_mode(coder, layout, case):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 3, 5, 5)).astype(np.float32)
    if case.startswith("pruned") or case == "all_zero":
        w[rng.random(w.shape) > (0 if case == "all_zero" else 0.1)] = 0
    if case.endswith("shared"):
        cb = np.linspace(-2, 2, 16, dtype=np.float32)
        w = np.where(w != 0, cb[np.abs(w[..., None] - cb).argmin(-1)], 0).astype(np.float32)
    lc = encode_layer("c.weight", "conv", w, bits=4, index_bits=8, coder=coder, layout=layout)
    if case == "dense_raw":
        assert lc.mode == "dense"
    if case == "pruned_shared" and layout == "sparse":
        assert lc.mode == "sparse"
    back = decode_layer(lc.header(), lc.sections)
    assert np.array_equal(back.dense(), w) and back.dense().dtype == np.float32
    crow, col, val = back.csr()
    m = w.reshape(40, -1)
    assert np.array_equal(crow, np.concatenate(([0], np.cumsum((m != 0).sum(1)))))
    assert np.array_equal(val, m[m != 0]) and np.array_equal(col, np.nonzero(m)[1])


def test_centroids_give_the_codebook_without_the_unused_ones():
    w = np.array([[0.0, 0.5], [2.0, 0.0]], np.float32)
    lc = encode_layer(
        "f.weight",
        "fc",
        w,
        bits=2,
        index_bits=2,
        coder="huffman",
        centroids=np.array([-1.0, 0.25, 0.5, 2.0], np.float32),
    )
    assert lc.codebook.tolist() == [0.5, 2.0]  # -1.0 and 0.25 are used by no weight
    assert np.array_equal(lc.dense(), w) and lc.symbols.tolist() == [0, 1, 2, 0]


def test_csr_from_positions():
    crow, col = csr_from_positions(np.array([0, 3, 4, 11]), (3, 4))
    assert crow.tolist() == [0, 2, 3, 4] and col.tolist() == [0, 3, 0, 3]
