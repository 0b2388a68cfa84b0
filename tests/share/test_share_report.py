import numpy as np
import pytest
import torch

from sparsenet.models import LeNet300
from sparsenet.share import (
    plot_histograms,
    quantization_report,
    share_weights,
    snapshot_codebooks,
    storage_bits,
)


def test_storage_formula():
    # n·b → n·log2(k) + k·b
    assert storage_bits(1000, 5) == {
        "before": 32000,
        "after": 1000 * 5 + 32 * 32,
        "ratio": 32000 / 6024,
    }
    assert storage_bits(10, 2, float_bits=64)["after"] == 10 * 2 + 4 * 64


def _model():
    torch.manual_seed(0)
    return LeNet300(in_features=30, hidden=(20, 10), num_classes=4)


def test_report_values():
    model = _model()
    with torch.no_grad():
        model.fc1.weight[:, :10] = 0  # 200 pruned weights
    ref = {n: model.get_submodule(n).weight.detach().clone() for n in ("fc1", "fc2", "fc3")}
    share_weights(model, "fc=3,fc3=7", init="linear")
    rep = quantization_report(model)
    rows = {r["name"]: r for r in rep["layers"]}
    assert list(rows) == ["fc1", "fc2", "fc3"]
    fc1 = rows["fc1"]
    assert fc1["weights"] == 600 and fc1["nonzero"] == 400 and fc1["clusters"] == 8
    q = model.fc1.weight.detach().double()
    keep = ref["fc1"] != 0
    err = (q - ref["fc1"].double())[keep]
    assert fc1["mse"] == pytest.approx(float((err**2).mean()), rel=1e-12)
    assert fc1["relative_error"] == pytest.approx(
        float(err.norm() / ref["fc1"].double().norm()), rel=1e-12
    )
    assert fc1["storage_bits_before"] == 400 * 32 and fc1["storage_bits_after"] == 400 * 3 + 8 * 32
    # fc3 has 40 weights and 128 clusters: lossless.
    assert rows["fc3"]["mse"] == 0 and rows["fc3"]["used"] == 40
    assert rep["total"]["storage_bits_before"] == sum(
        r["storage_bits_before"] for r in rows.values()
    )


def test_report_reference_survives_finetuning():
    model = _model()
    share_weights(model, "fc=2")
    mse0 = quantization_report(model)["layers"][0]["mse"]
    with torch.no_grad():
        model.fc1.parametrizations.weight[0].centroids.add_(0.5)  # move the codebook
    assert quantization_report(model)["layers"][0]["mse"] > mse0 + 0.2


def test_histogram_pngs(tmp_path):
    model = _model()
    share_weights(model, "fc=3")
    before = snapshot_codebooks(model)
    assert set(before) == {"fc1", "fc2", "fc3"} and before["fc1"].shape == (8,)
    with torch.no_grad():
        model.fc1.parametrizations.weight[0].centroids.mul_(1.1)
    assert not np.array_equal(snapshot_codebooks(model)["fc1"], before["fc1"])
    paths = plot_histograms(model, tmp_path / "plots", before)
    assert [p.name for p in paths] == ["hist_fc1.png", "hist_fc2.png", "hist_fc3.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
