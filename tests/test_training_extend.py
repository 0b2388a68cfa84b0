"""Item 19 of issue 17: `train --resume --epochs N` on a finished run extends it."""

from __future__ import annotations

import math

import pytest

from sparsenet.checkpoint import load_checkpoint
from sparsenet.errors import CheckpointError
from sparsenet.models import model_for_dataset
from sparsenet.training import TrainConfig, fit


def _model(data):
    return model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=0)


def test_item_19_extending_a_finished_run(tmp_path, digits_data):
    ck = tmp_path / "r.pt"
    fit(_model(digits_data), digits_data.train, TrainConfig(epochs=1, lr=0.1, quiet=True),
        checkpoint=ck)
    hist = fit(_model(digits_data), digits_data.train,
               TrainConfig(epochs=3, lr=0.5, quiet=True), checkpoint=ck, resume=True)
    # epoch 1 is the restored one; epochs 2-3 are a new cosine segment starting at lr 0.5
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[1]["lr"] == pytest.approx(0.5)
    assert hist[2]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)) / 2)
    ts = load_checkpoint(ck)["train_state"]
    assert ts["epoch"] == 3 and ts["config"]["lr"] == 0.5
    # an already long-enough run returns at once
    again = fit(_model(digits_data), digits_data.train,
                TrainConfig(epochs=3, lr=0.5, quiet=True), checkpoint=ck, resume=True)
    assert len(again) == 3


def test_item_24_resume_mismatch_is_one_line(tmp_path, digits_data):
    ck = tmp_path / "r.pt"
    fit(_model(digits_data), digits_data.train, TrainConfig(epochs=1, quiet=True), checkpoint=ck)
    other = model_for_dataset("lenet5", digits_data.input_shape, digits_data.num_classes, seed=0)
    with pytest.raises(CheckpointError) as exc:
        fit(other, digits_data.train, TrainConfig(epochs=2, quiet=True), checkpoint=ck,
            resume=True)
    assert "\n" not in str(exc.value) and "cannot resume" in str(exc.value)
    with pytest.raises(CheckpointError) as exc:
        fit(_model(digits_data), digits_data.train,
            TrainConfig(epochs=2, optimizer="adam", quiet=True), checkpoint=ck, resume=True)
    assert "\n" not in str(exc.value) and "optimizer" in str(exc.value)
