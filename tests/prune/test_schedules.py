"""Iterative prune-retrain, gradual cubic pruning, sensitivity."""

import json

import pytest
import torch

from sparsenet.models import LeNet300
from sparsenet.prune import (
    OBD,
    GradualPruning,
    PruneSchedule,
    cubic_sparsity,
    prune_gradual,
    prune_iterative,
    sensitivity,
    sparsity_report,
    write_sensitivity,
)
from sparsenet.training import TrainConfig, evaluate, fit


@pytest.fixture(scope="module")
def trained(digits_data):
    torch.manual_seed(0)
    model = LeNet300(in_features=64, hidden=(64, 32))
    fit(model, digits_data.train, TrainConfig(epochs=6, lr=0.05, quiet=True, batch_size=64))
    return model


def clone(model):
    import copy

    return copy.deepcopy(model)


def test_iterative_reaches_target_and_retraining_helps(trained, digits_data):
    cfg = TrainConfig(epochs=6, lr=0.05, quiet=True, batch_size=64)
    start = clone(trained)
    res = prune_iterative(
        start, digits_data.train, "magnitude", sparsity=0.9,
        schedule=PruneSchedule(steps=3, retrain_epochs=1), config=cfg, val=digits_data.test,
    )
    model, hist = res.model, res.history
    assert model is start and res.events == []
    expected = [1 - 0.1 ** (k / 3) for k in (1, 2, 3)]
    assert [h["sparsity"] for h in hist] == pytest.approx(expected, abs=1e-4)
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.9, abs=1e-4)
    # retraining ran at lr/10 and recorded sparsity through the callback
    assert hist[0]["fit"][0]["lr"] == pytest.approx(0.005)
    assert hist[-1]["fit"][-1]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    oneshot = clone(trained)
    from sparsenet.prune import prune

    prune(oneshot, "magnitude", sparsity=0.9)
    acc_oneshot = evaluate(oneshot, digits_data.test)["accuracy"]
    assert hist[-1]["retrained_acc"] >= acc_oneshot


def test_cubic_schedule_values():
    assert cubic_sparsity(0, 0.9, 0.0, 0, 100) == 0.0
    assert cubic_sparsity(100, 0.9, 0.0, 0, 100) == pytest.approx(0.9)
    assert cubic_sparsity(50, 0.9, 0.0, 0, 100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(500, 0.9, 0.1, 0, 100) == pytest.approx(0.9)


def test_gradual_pruning_callback_follows_schedule(trained, digits_data):
    model = clone(trained)
    n = len(digits_data.x_train)
    steps_per_epoch = -(-n // 64)
    cb = GradualPruning("magnitude", 0.8, end_step=steps_per_epoch, frequency=5)
    hist = fit(model, digits_data.train, TrainConfig(epochs=2, lr=0.005, quiet=True, batch_size=64),
               callbacks=[cb])
    assert cb.events[-1][0] == steps_per_epoch
    targets = [s for _, s in cb.events]
    assert targets == sorted(targets) and targets[-1] == pytest.approx(0.8)
    assert hist[0]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.8, abs=1e-4)


def test_prune_gradual_per_layer(trained, digits_data):
    model = clone(trained)
    res = prune_gradual(model, digits_data.train, "magnitude", {"fc1": 0.9, "fc2": 0.5},
                        schedule=PruneSchedule(epochs=1),
                        config=TrainConfig(lr=0.05, quiet=True, batch_size=128))
    assert res.model is model and len(res.history) == 1
    assert res.events and res.events[-1][1] == pytest.approx(1.0)  # progress at the last event
    sp = {r["name"]: r["sparsity"] for r in sparsity_report(model)["layers"]}
    assert sp["fc1"] == pytest.approx(0.9, abs=1e-3) and sp["fc2"] == pytest.approx(0.5, abs=1e-3)


def test_sensitivity_restores_model_and_writes_files(trained, digits_data, tmp_path):
    model = clone(trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = sensitivity(model, digits_data.test, "magnitude", sparsities=[0.0, 0.5, 0.99])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert set(res["layers"]) == {"fc1", "fc2", "fc3"}
    for row in res["layers"].values():
        assert row["accuracy"][0] == pytest.approx(res["dense"]["accuracy"])
        assert row["accuracy"][-1] < row["accuracy"][0]
    paths = write_sensitivity(res, tmp_path / "sens")
    assert json.loads(open(paths["json"]).read())["method"] == "magnitude"
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_prune_schedule_validates_and_sets_the_retraining_lr():
    base = TrainConfig(lr=0.05, epochs=9)
    assert PruneSchedule().retrain_config(base, 2, seed=3).lr == pytest.approx(0.005)
    assert PruneSchedule(lr_factor=0.5).retrain_config(base, 2, seed=3).lr == pytest.approx(0.025)
    cfg = PruneSchedule(lr=0.1).retrain_config(base, 2, seed=3)
    assert (cfg.lr, cfg.epochs, cfg.seed) == (0.1, 2, 3)
    from sparsenet.errors import SparsenetError

    for bad, match in [
        ({"lr": 0.1, "lr_factor": 0.5}, "at most one"),
        ({"steps": 0}, "steps=0"),
        ({"retrain_epochs": -1}, "retrain_epochs=-1"),
        ({"scope": "row"}, "scope='row'"),
        ({"prune_fraction": 0.0}, "prune_fraction"),
        ({"pattern": "5:4"}, "5:4"),
    ]:
        with pytest.raises(SparsenetError, match=match):
            PruneSchedule(**bad)


def test_criterion_object_without_data_gets_the_training_data(trained, digits_data):
    """OBD(samples=, form=) carries its options; the schedule lends it the training data."""
    x, y = digits_data.train
    crit = OBD(samples=200, form="lm")
    a, b = clone(trained), clone(trained)
    plan = PruneSchedule(steps=1, retrain_epochs=0)
    prune_iterative(a, (x, y), crit, sparsity=0.7, schedule=plan)
    assert crit.data is None  # the caller's object is left as it was
    prune_iterative(b, (x, y), OBD((x[:200], y[:200]), samples=None, form="lm"), sparsity=0.7,
                    schedule=plan)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    # and the default, 10,000 samples, is what a name gives
    from sparsenet.prune import DEFAULT_OBD_SAMPLES, make_criterion

    assert make_criterion("obd", data=(x, y)).samples == DEFAULT_OBD_SAMPLES
    assert make_criterion("obd", data=(x, y), samples=50).samples == 50
