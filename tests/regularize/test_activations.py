import subprocess
import sys

import pytest
import torch
from torch import nn

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SpecError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.regularize import (
    ShiftedReLU,
    TruncatedSigmoid,
    activation_from_spec,
    replace_activations,
)
from sparsenet.training import TrainConfig, evaluate, fit


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.5, 0.9])
def test_truncated_sigmoid_definition(tau):
    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    y = TruncatedSigmoid(tau)(x)
    s = torch.sigmoid(x)
    assert torch.equal(y[s < tau], torch.zeros_like(y[s < tau]))  # exactly zero below τ
    assert torch.equal(y[s >= tau], s[s >= tau])  # σ itself at or above τ
    assert ((y == 0) | (y >= tau)).all()


def test_truncated_sigmoid_gradient_at_and_around_cut():
    tau = 0.25
    cut = torch.logit(torch.tensor(tau, dtype=torch.float64))
    x = torch.stack([cut - 1e-3, cut - 1e-9, cut + 1e-9, cut + 1e-3, cut + 2.0])
    x.requires_grad_(True)
    TruncatedSigmoid(tau)(x).sum().backward()
    s = torch.sigmoid(x.detach())
    expected = torch.where(s >= tau, s * (1 - s), torch.zeros_like(s))
    assert torch.equal(x.grad, expected)
    assert x.grad[0] == 0 and x.grad[1] == 0 and x.grad[2] > 0


def test_straight_through_same_values_sigmoid_gradient():
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64, requires_grad=True)
    exact, ste = TruncatedSigmoid(0.4), TruncatedSigmoid(0.4, grad="straight-through")
    y = ste(x)
    assert torch.equal(y, exact(x))  # bit-identical forward, exact zeros included
    assert int((y == 0).sum()) > 0
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    assert torch.allclose(x.grad, s * (1 - s), rtol=0, atol=1e-15)
    with pytest.raises(SpecError, match="grad"):
        TruncatedSigmoid(0.1, grad="magic")


def test_shifted_relu_modes():
    x = torch.tensor([-1.0, 0.0, 0.2, 0.3, 0.31, 2.0], requires_grad=True)
    thr = ShiftedReLU(0.3)
    y = thr(x)
    assert torch.equal(y, torch.tensor([0.0, 0.0, 0.0, 0.0, 0.31, 2.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0, 0, 0, 1, 1]))
    shift = ShiftedReLU(0.3, mode="shift")
    assert torch.allclose(shift(x), torch.relu(x - 0.3))
    assert torch.equal(ShiftedReLU(0.0)(x), torch.relu(x))
    with pytest.raises(SpecError, match="tau"):
        ShiftedReLU(-0.1)
    with pytest.raises(SpecError, match="tau"):
        TruncatedSigmoid(1.0)


def test_spec_round_trip():
    acts = [
        TruncatedSigmoid(0.2),
        TruncatedSigmoid(0.3, grad="straight-through"),
        ShiftedReLU(0.5),
        ShiftedReLU(0.1, mode="shift"),
    ]
    for act in acts:
        again = activation_from_spec(act.spec())
        assert type(again) is type(act) and again.spec() == act.spec()
        assert getattr(again, "mode", None) == getattr(act, "mode", None)
    with pytest.raises(SpecError, match="unknown activation"):
        activation_from_spec({"type": "swish", "tau": 0.1})


def test_replace_activations_forms():
    m = replace_activations(LeNet300(), "truncated-sigmoid:0.1")
    assert isinstance(m.relu1, TruncatedSigmoid) and isinstance(m.relu2, TruncatedSigmoid)
    assert m.relu1 is not m.relu2
    m = replace_activations(LeNet300(), "thresholded-relu:0.2@fc2")
    assert isinstance(m.relu1, nn.ReLU) and isinstance(m.relu2, ShiftedReLU)
    m = replace_activations(LeNet300(), ShiftedReLU(0.1, mode="shift"), layers=["relu1"])
    assert isinstance(m.relu1, ShiftedReLU) and m.relu1.mode == "shift"
    assert isinstance(m.relu2, nn.ReLU)
    m = replace_activations(LeNet300(), lambda: TruncatedSigmoid(0.3), layers=["fc1"])
    assert m.relu1.tau == 0.3
    with pytest.raises(SpecError, match="not followed by an activation"):
        replace_activations(LeNet5(), "truncated-sigmoid:0.1", layers=["conv1"])
    with pytest.raises(SpecError, match="unknown layer"):
        replace_activations(LeNet300(), "truncated-sigmoid:0.1", layers=["fc7"])
    with pytest.raises(SpecError, match="expected KIND:TAU"):
        replace_activations(LeNet300(), "truncated-sigmoid")
    m = replace_activations(LeNet300(), "truncated-sigmoid:0.2:ste@fc1")
    assert m.relu1.grad == "straight-through" and isinstance(m.relu2, nn.ReLU)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = replace_activations(LeNet300(in_features=64), "truncated-sigmoid:0.15@fc1")
    replace_activations(m, "shifted-relu:0.05@fc2")
    m2 = replace_activations(LeNet300(in_features=64), "truncated-sigmoid:0.5:ste")
    save_model(m2, tmp_path / "ste.pt")
    assert load_model(tmp_path / "ste.pt")[0].relu2.grad == "straight-through"
    path = tmp_path / "m.pt"
    save_model(m, path)
    back, _ = load_model(path)
    assert isinstance(back.relu1, TruncatedSigmoid) and back.relu1.tau == 0.15
    assert isinstance(back.relu2, ShiftedReLU) and back.relu2.mode == "shift"
    x = torch.rand(7, 1, 8, 8)
    m.eval()
    assert torch.equal(m(x), back(x))


def test_checkpoint_loads_in_fresh_process(tmp_path):
    m = replace_activations(LeNet300(in_features=64), "truncated-sigmoid:0.1")
    path = tmp_path / "m.pt"
    save_model(m, path)
    code = (
        "import sys; from sparsenet.checkpoint import load_model; "
        f"m, _ = load_model({str(path)!r}); print(type(m.relu1).__name__, m.relu1.tau)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["TruncatedSigmoid", "0.1"]


@pytest.mark.parametrize(
    "spec", ["truncated-sigmoid:0.1", "truncated-sigmoid:0.3:ste", "thresholded-relu:0.1"]
)
def test_sparse_activation_model_learns_on_digits(digits_data, spec):
    torch.manual_seed(0)
    m = replace_activations(LeNet300(in_features=64), spec)
    x, y = digits_data.train
    before = evaluate(m, (x, y))["loss"]
    cfg = TrainConfig(epochs=8, batch_size=64, lr=0.01, optimizer="adam", quiet=True)
    hist = fit(m, (x, y), cfg)
    after = evaluate(m, (x, y))["loss"]
    losses = [h["train_loss"] for h in hist]
    assert losses[-1] < 0.3 * losses[0] and after < 0.3 * before
    assert evaluate(m, digits_data.test)["accuracy"] > 0.85
    # and the activations really are exactly zero for a share of units
    h = m.relu1(m.fc1(x.flatten(1)))
    assert (h == 0).float().mean() > 0.05
