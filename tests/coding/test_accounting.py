import math

import numpy as np
import pytest

from sparsenet.coding import format_report, read_snn, save_snn, size_report
from sparsenet.coding.accounting import entropy_bits


def test_entropy_bits():
    assert entropy_bits(np.array([], dtype=np.int64)) == 0.0
    assert entropy_bits(np.array([3, 3, 3])) == 0.0
    assert entropy_bits(np.array([0, 1, 0, 1])) == pytest.approx(4.0)
    assert entropy_bits(np.array([0, 0, 0, 1])) == pytest.approx(
        4 * (-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    )


@pytest.mark.parametrize("coder", ["huffman", "ans"])
def test_report_adds_up(tmp_path, lenet300_digits, coder):
    path = tmp_path / "m.snn"
    rep = save_snn(lenet300_digits, path, coder=coder, layout="sparse")
    assert rep == size_report(read_snn(path))  # save-time and inspect-time reports agree
    rows, total = rep["layers"], rep["total"]
    assert [r["layer"] for r in rows] == ["fc1", "fc2", "fc3"]
    snn = read_snn(path)
    for r, lc in zip(rows, snn.layers, strict=True):
        assert r["mode"] == "sparse" and r["weights"] == lc.numel and r["nnz"] == lc.nnz
        assert r["weight_bits_after"] == 8 * len(lc.sections["index"])
        assert r["index_bits_after"] == 8 * len(lc.sections["gaps"])
        assert (
            r["index_bits_before"] == lc.entries * 5 and r["weight_bits_before"] == lc.entries * 5
        )
        for s in r["streams"].values():
            # no coder beats the Shannon bound of the empirical distribution
            assert s["payload_bits"] >= s["entropy_bits"] * (1 - 1e-9) - 64
            assert s["coded_bits"] == s["payload_bits"] + s["table_bits"]
        assert r["ratio"] == pytest.approx(r["dense_bits"] / r["total_bits_after"])
    assert total["weights"] == sum(r["weights"] for r in rows) == 64 * 300 + 300 * 100 + 1000
    assert 0.07 < total["density"] < 0.09
    sections = sum(len(b) for lc in snn.layers for b in lc.sections.values())
    assert total["file_bytes"] > sections and total["ratio_file"] > 10
    text = format_report(rep)
    assert "fc1" in text and "total" in text and f"{total['file_bytes']:,}" in text


def test_huffman_within_a_bit_of_entropy(tmp_path, lenet300_digits):
    rep = save_snn(lenet300_digits, tmp_path / "m.snn", layout="sparse")
    fc1 = rep["layers"][0]["streams"]
    for s in fc1.values():
        assert s["bits_per_symbol"] <= s["entropy_per_symbol"] + 1.0
