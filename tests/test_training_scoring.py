"""evaluate / predict / logits: one (x, y) convention, labels from predict."""

import pytest
import torch
from torch import nn

import sparsenet
from sparsenet.errors import SparsenetError
from sparsenet.training import evaluate, logits, predict, sharded_evaluate


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_logits_and_labels_shapes(digits_data):
    m = _net()
    x = digits_data.x_test
    out = logits(m, x, batch_size=7)
    assert out.shape == (len(x), 10) and out.dtype == torch.float32
    assert torch.allclose(out, m(x), atol=1e-6)
    labels = predict(m, x, batch_size=7)
    assert labels.shape == (len(x),) and labels.dtype == torch.int64
    assert torch.equal(labels, m(x).argmax(1))


def test_predict_empty_input():
    m = _net()
    assert predict(m, torch.empty(0, 1, 8, 8)).shape == (0,)
    assert predict(m, torch.empty(0, 1, 8, 8)).dtype == torch.int64


def test_evaluate_takes_a_pair_and_matches_manual(digits_data):
    m = _net()
    x, y = digits_data.test
    ev = evaluate(m, digits_data.test)
    with torch.no_grad():
        out = m(x)
    assert ev["n"] == len(x)
    assert ev["accuracy"] == pytest.approx(float((out.argmax(1) == y).double().mean()))
    assert ev["loss"] == pytest.approx(float(nn.functional.cross_entropy(out, y)), rel=1e-6)
    assert evaluate(m, (x, y)) == ev
    assert sharded_evaluate(m, (x, y)) == ev  # one process: the same call


def test_evaluate_x_y_is_deprecated_but_equal(digits_data):
    m = _net()
    x, y = digits_data.test
    with pytest.warns(DeprecationWarning, match="evaluate"):
        old = evaluate(m, x, y)
    assert old == evaluate(m, (x, y))


def test_evaluate_keeps_training_mode(digits_data):
    m = _net().train()
    evaluate(m, digits_data.test)
    assert m.training


@pytest.mark.parametrize(
    "bad, match",
    [
        ("whole", "whole Dataset"),
        ("tensor", "expected an \\(x, y\\) pair"),
        ("lengths", "inputs but"),
    ],
)
def test_evaluate_names_bad_data(digits_data, bad, match):
    m = _net()
    x, y = digits_data.test
    data = {"whole": digits_data, "tensor": x, "lengths": (x, y[:-1])}[bad]
    with pytest.raises(SparsenetError, match=match):
        evaluate(m, data)


def test_top_level_names():
    assert sparsenet.logits is logits and sparsenet.predict is predict
    assert sparsenet.evaluate is evaluate
