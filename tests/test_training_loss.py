import pytest
import torch
from torch import nn

from sparsenet.errors import SparsenetError
from sparsenet.training import TrainConfig, fit, loss_function


def test_losses_by_name():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert loss_function(TrainConfig()) is nn.functional.cross_entropy  # the old default
    onehot = nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(loss_function(TrainConfig(loss="mse"))(logits, y),
                               ((logits - onehot) ** 2).mean())
    smooth = onehot * 0.9 + 0.1 / 4
    torch.testing.assert_close(
        loss_function(TrainConfig(loss="mse", label_smoothing=0.1))(logits, y),
        ((logits - smooth) ** 2).mean())
    torch.testing.assert_close(
        loss_function(TrainConfig(label_smoothing=0.1))(logits, y),
        -(smooth * logits.log_softmax(1)).sum(1).mean())


@pytest.mark.parametrize("bad", [{"loss": "hinge"}, {"label_smoothing": 1.0}])
def test_bad_loss_names_the_field(bad):
    with pytest.raises(SparsenetError, match=f"bad {next(iter(bad))}="):
        TrainConfig(**bad)


def test_fit_trains_with_the_configured_loss(digits_data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    cfg = TrainConfig(epochs=2, lr=0.02, loss="mse", quiet=True)
    hist = fit(model, digits_data.train, cfg, val=digits_data.test)
    with torch.no_grad():
        logits = model(digits_data.test[0])
    onehot = nn.functional.one_hot(digits_data.test[1], 10).float()
    assert hist[-1]["val_loss"] == pytest.approx(float(((logits - onehot) ** 2).mean()), rel=1e-5)
    assert hist[1]["train_loss"] < hist[0]["train_loss"]
