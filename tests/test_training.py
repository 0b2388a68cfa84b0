import math

import pytest
import torch

from sparsenet.checkpoint import load_checkpoint, load_model
from sparsenet.errors import SparsenetError
from sparsenet.models import model_for_dataset
from sparsenet.training import Callback, TrainConfig, evaluate, fit


def _model(data, seed=0):
    return model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=seed)


CFG = TrainConfig(epochs=3, batch_size=64, lr=0.05, quiet=True, seed=1)


def test_fit_learns_digits(digits_data):
    m = _model(digits_data)
    before = evaluate(m, digits_data.test)["accuracy"]
    hist = fit(m, digits_data.train, CFG.replace(epochs=6), val=digits_data.test)
    assert len(hist) == 6 and hist[-1]["val_acc"] > max(0.8, before)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_same_seed_same_result(digits_data):
    a, b = _model(digits_data), _model(digits_data)
    fit(a, digits_data.train, CFG)
    fit(b, digits_data.train, CFG)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    c = _model(digits_data)
    fit(c, digits_data.train, CFG.replace(seed=2))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize(
    "optimizer,schedule", [("sgd", "step"), ("adam", "constant"), ("sgd", "cosine")]
)
def test_optimizers_and_schedules(digits_data, optimizer, schedule):
    m = _model(digits_data)
    cfg = CFG.replace(
        optimizer=optimizer,
        schedule=schedule,
        lr=0.01 if optimizer == "adam" else 0.05,
        step_size=1,
        gamma=0.5,
    )
    hist = fit(m, digits_data.train, cfg)
    lrs = [h["lr"] for h in hist]
    if schedule == "step":
        assert lrs == pytest.approx([0.05, 0.025, 0.0125])
    elif schedule == "constant":
        assert lrs == [0.01] * 3
    else:
        assert lrs[0] == 0.05 and lrs[1] == pytest.approx(0.05 * (1 + math.cos(math.pi / 3)) / 2)


def test_resume_equals_uninterrupted(digits_data, tmp_path):
    full = _model(digits_data)
    fit(full, digits_data.train, CFG.replace(epochs=4))
    part = _model(digits_data)
    ck = tmp_path / "run.pt"

    class Crash(Callback):  # Ctrl-C at the start of the third epoch
        def on_epoch_begin(self, s):
            if s.epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(part, digits_data.train, CFG.replace(epochs=4), checkpoint=ck, callbacks=[Crash()])
    assert load_checkpoint(ck)["train_state"]["epoch"] == 2
    # A new process: fresh model object, resume from the checkpoint to 4 epochs.
    resumed = _model(digits_data, seed=99)
    hist = fit(resumed, digits_data.train, CFG.replace(epochs=4), checkpoint=ck, resume=True)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert all(
        torch.equal(x, y) for x, y in zip(full.parameters(), resumed.parameters(), strict=True)
    )
    assert load_checkpoint(ck)["train_state"]["epoch"] == 4


def test_callback_hooks_order_and_penalty(digits_data):
    calls = []

    class Spy(Callback):
        def on_train_begin(self, s):
            calls.append("begin")

        def on_epoch_begin(self, s):
            calls.append("epoch")

        def penalty(self, s):
            calls.append("penalty")
            return torch.tensor(0.0)

        def on_after_backward(self, s):
            calls.append("backward")
            assert s.model.fc1.weight.grad is not None

        def on_step_end(self, s):
            calls.append("step")

        def on_epoch_end(self, s):
            s.metrics["spy"] = 1

        def on_train_end(self, s):
            calls.append("end")

    small = digits_data.subset(64)
    hist = fit(
        _model(digits_data), small.train, CFG.replace(epochs=1, batch_size=64), callbacks=[Spy()]
    )
    assert calls == ["begin", "epoch", "penalty", "backward", "step", "end"]
    assert hist[0]["spy"] == 1


def test_penalty_changes_objective(digits_data):
    class Big(Callback):
        def penalty(self, s):
            return 1e-2 * sum(p.abs().sum() for p in s.model.parameters())

    a, b = _model(digits_data), _model(digits_data)
    fit(a, digits_data.train, CFG.replace(epochs=1))
    fit(b, digits_data.train, CFG.replace(epochs=1), callbacks=[Big()])
    assert b.fc1.weight.abs().sum() < a.fc1.weight.abs().sum()


def test_config_validation_names_value():
    with pytest.raises(SparsenetError, match="epochs=-1"):
        TrainConfig(epochs=-1)
    with pytest.raises(SparsenetError, match="optimizer='rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(SparsenetError, match="unknown TrainConfig field"):
        TrainConfig().replace(nope=1)


def test_checkpoint_round_trip(digits_data, tmp_path):
    from sparsenet.checkpoint import save_model

    m = _model(digits_data)
    save_model(m, tmp_path / "m.pt", metadata={"dataset": "digits"})
    m2, meta = load_model(tmp_path / "m.pt")
    assert meta["dataset"] == "digits"
    x = digits_data.x_test[:10]
    assert torch.equal(m(x), m2(x))
