import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsenet.coding import ans
from sparsenet.coding.accounting import entropy_bits
from sparsenet.errors import CorruptFileError


def roundtrip(x: np.ndarray) -> bytes:
    data = ans.encode(x)
    y = ans.decode(data, expected_n=x.size)
    assert y.dtype == np.int64 and np.array_equal(y, x)
    return data


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.int64,
        st.integers(0, 3000),
        elements=st.one_of(st.integers(0, 7), st.integers(0, 300), st.integers(0, 65535)),
    )
)
def test_roundtrip_property(x):
    roundtrip(x)


@pytest.mark.parametrize(
    "x",
    [
        np.zeros(0, np.int64),
        np.array([5]),
        np.full(1000, 3),
        np.arange(1 << 16),
        np.array([65535, 0]),
    ],
    ids=["empty", "one", "constant", "alphabet16", "extremes"],
)
def test_roundtrip_edge_cases(x):
    roundtrip(np.asarray(x, dtype=np.int64))


def test_near_entropy_on_a_long_stream():
    x = np.random.default_rng(0).geometric(0.1, 200000) - 1
    data = ans.encode(x)
    payload = 8 * (len(data) - ans.table_bytes(data))
    assert payload <= 1.005 * entropy_bits(x)


def test_quantized_frequencies_sum_and_cover():
    f = ans.quantize_frequencies(np.array([0, 1, 10**6, 3, 0, 7]))
    assert f.sum() == 1 << ans.PRECISION and np.all((f > 0) == (np.array([0, 1, 1, 1, 0, 1]) > 0))


def test_corrupt_streams_raise_corrupt_file_error():
    data = ans.encode(np.random.default_rng(0).integers(0, 20, 5000))
    with pytest.raises(CorruptFileError):
        ans.decode(data, expected_n=4999)
    for cut in (0, 5, len(data) - 1, len(data) - 4):
        with pytest.raises(CorruptFileError):
            ans.decode(data[:cut])
    rng = np.random.default_rng(0)
    for _ in range(300):
        b = bytearray(data)
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        try:
            ans.decode(bytes(b))
        except CorruptFileError:
            pass
