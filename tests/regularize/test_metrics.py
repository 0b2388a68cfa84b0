import math

import pytest
import torch
from torch import nn

from sparsenet.errors import SpecError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.regularize import (
    activation_sites,
    activation_sparsity,
    format_activation_sparsity,
    hoyer,
    weight_sparsity,
)


def test_hoyer_extremes_and_formula():
    assert float(hoyer(torch.tensor([0.0, 0.0, 5.0, 0.0]))) == 1.0
    assert float(hoyer(torch.full((9,), -2.0))) == pytest.approx(0.0, abs=1e-12)
    assert float(hoyer(torch.zeros(5))) == 1.0
    assert float(hoyer(torch.tensor([3.0]))) == 1.0
    x = torch.tensor([1.0, -2.0, 0.0, 4.0])
    n = 4
    expected = (math.sqrt(n) - 7 / math.sqrt(21)) / (math.sqrt(n) - 1)
    assert float(hoyer(x)) == pytest.approx(expected)
    # scale-invariant, per-row along dim
    rows = torch.stack([x, 10 * x, torch.tensor([0.0, 0.0, 0.0, 1.0])])
    h = hoyer(rows, dim=1)
    assert h.shape == (3,) and torch.allclose(
        h, torch.tensor([expected, expected, 1.0], dtype=h.dtype)
    )


def test_weight_sparsity_counts():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(
            torch.tensor([[0.0, 1e-4, 2.0, 0.0], [0.5, 0.0, -1e-5, 1.0], [1, 1, 1, 1]])
        )
        m[2].weight.fill_(0.0)
        m[0].bias.fill_(0.0)  # biases are not counted
    r = weight_sparsity(m, eps=1e-3)
    assert r["layers"]["0"]["zeros"] == 3 and r["layers"]["0"]["small"] == 5
    assert r["layers"]["2"]["sparsity"] == 1.0 and r["layers"]["2"]["hoyer"] == 1.0
    assert r["total"] == {
        "weights": 18,
        "zeros": 9,
        "sparsity": 0.5,
        "small": 11,
        "sparsity_eps": 11 / 18,
    }
    assert weight_sparsity(m)["layers"]["0"]["small"] == 3  # eps = 0 → exact zeros only
    assert list(weight_sparsity(m, layers=["2"])["layers"]) == ["2"]


def test_weight_sparsity_sees_parametrised_weight():
    from torch.nn.utils import parametrize

    class Half(nn.Module):
        def forward(self, w):
            return w * (torch.arange(w.numel()).reshape(w.shape) % 2)

    m = nn.Sequential(nn.Linear(4, 4))
    parametrize.register_parametrization(m[0], "weight", Half())
    assert weight_sparsity(m)["layers"]["0"]["zeros"] >= 8


def test_activation_sparsity_matches_manual_count():
    torch.manual_seed(0)
    m = LeNet300(in_features=64)
    x = torch.randn(37, 1, 8, 8)
    r = activation_sparsity(m, x, batch_size=10)
    h1 = torch.relu(m.fc1(x.flatten(1)))
    h2 = torch.relu(m.fc2(h1))
    assert r["samples"] == 37
    assert r["layers"]["fc1"]["site"] == "relu1" and r["layers"]["fc1"]["units"] == 300
    assert r["layers"]["fc1"]["sparsity"] == pytest.approx(float((h1 == 0).double().mean()))
    assert r["layers"]["fc2"]["sparsity"] == pytest.approx(float((h2 == 0).double().mean()))
    assert r["layers"]["fc2"]["dead"] == int((h2 == 0).all(0).sum())
    assert r["layers"]["fc1"]["hoyer"] == pytest.approx(float(hoyer(h1, dim=1).mean()))
    total = (int((h1 == 0).sum()) + int((h2 == 0).sum())) / (37 * 400)
    assert r["total"]["sparsity"] == pytest.approx(total)
    assert "relu1" in format_activation_sparsity(r)
    assert not any(mod._forward_hooks for mod in m.modules())


def test_activation_sites_resolution():
    m = LeNet5()
    sites = activation_sites(m)
    assert {k: v[0] for k, v in sites.items()} == {"fc1": "relu1"}
    # a layer with no activation after it is measured at its own output
    assert activation_sites(m, ["conv1"])["conv1"][0] == "conv1"
    with pytest.raises(SpecError, match="unknown layer"):
        activation_sites(m, ["pool1"])
