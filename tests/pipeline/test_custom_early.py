"""A custom model whose architecture cannot be recorded fails before any stage runs."""

import pytest
import torch
from torch import nn

import sparsenet as sn
from sparsenet.graph import RecordError


class DataDependent(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.sum() > 0:
            x = x * 2
        return self.fc(x)


def test_untraceable_custom_model_is_refused_before_training(tmp_path):
    data = sn.digits()
    recipe = {"name": "t", "stages": [{"train": {"epochs": 1}}, {"encode": {}}]}
    with pytest.raises(RecordError, match="cannot record"):
        sn.compress(DataDependent(), data, recipe, run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "stages" / "00-train.pt").exists()
