"""Fixtures: pruned + shared models made by hand (independent of sparsenet.prune/share)."""

from __future__ import annotations

import pytest
from snn_helpers import prune_and_share
from torch import nn

from sparsenet.models import build_model


@pytest.fixture()
def lenet300_digits() -> nn.Module:
    return prune_and_share(build_model("lenet300", seed=0, in_features=64), density=0.08, k=32)


@pytest.fixture()
def lenet5_digits() -> nn.Module:
    m = build_model("lenet5", seed=0, in_channels=1, input_size=8, num_classes=10, padding=2)
    return prune_and_share(m, density=0.2, k=64)


@pytest.fixture()
def tiny_model() -> nn.Module:
    m = build_model("lenet300", seed=0, in_features=12, hidden=[6], num_classes=3)
    return prune_and_share(m, density=0.3, k=4)
