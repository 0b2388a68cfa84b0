import pytest
import torch

from sparsenet.errors import SparsenetError
from sparsenet.models import LeNet5, LeNet300, build_model, count_weights, model_for_dataset


def test_lenet300_weight_count():
    m = build_model("lenet300")
    assert count_weights(m) == 266_200
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [n for n, _ in m.named_children()] == ["flatten", "fc1", "relu1", "fc2", "relu2", "fc3"]


def test_lenet5_weight_count():
    m = build_model("lenet5")
    assert count_weights(m) == 430_500
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert m.fc1.in_features == 800


def test_seeded_build_is_identical():
    a, b = build_model("lenet300", seed=3), build_model("lenet300", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_model_for_small_inputs():
    m = model_for_dataset("lenet5", (1, 8, 8), 10)
    assert m(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    m = model_for_dataset("lenet300", (1, 8, 8), 10)
    assert m.fc1.in_features == 64


def test_bad_model_args():
    with pytest.raises(SparsenetError, match="unknown model"):
        build_model("alexnet")
    with pytest.raises(SparsenetError, match="too small"):
        LeNet5(input_size=8)
    with pytest.raises(SparsenetError, match="bad sizes"):
        LeNet300(num_classes=1)
