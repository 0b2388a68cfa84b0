"""A module outside the registry through every stage with the user's own TrainConfig."""

import json

import pytest
import torch
from torch import nn

from sparsenet.bn import FoldedBatchNorm
from sparsenet.checkpoint import load_model
from sparsenet.coding.container import read_snn
from sparsenet.pipeline import STAGES, compress, read_manifest
from sparsenet.pipeline.recipe import RecipeError, validate_recipe
from sparsenet.pipeline.stages import config_facts
from sparsenet.training import TrainConfig


class TinyBNNet(nn.Module):
    """Defined only here: conv → BN → ReLU, linear → BN1d → ReLU, classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 16, 24)
        self.bn_fc = nn.BatchNorm1d(24)
        self.out = nn.Linear(24, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.out(torch.relu(self.bn_fc(self.fc(x.flatten(1)))))


RECIPE = {
    "seed": 5,
    "stages": [
        {"train": {"skip_if_trained": False}},
        {"prune": {"sparsity": 0.5, "iterations": 2, "retrain_epochs": 1, "lr_factor": 0.5}},
        {"share": {"weight_bits": 4, "finetune_epochs": 1}},
        {"encode": {}},
    ],
}
CONFIG = TrainConfig(epochs=1, optimizer="adam", lr=2e-3, batch_size=64, label_smoothing=0.05,
                     weight_decay=1e-5)


def _net():
    torch.manual_seed(0)
    return TinyBNNet()


def _run(net, data, run_dir, **kw):
    kw.setdefault("report", False)
    return compress(net, data, RECIPE, run_dir=run_dir, quiet=True, config=CONFIG, **kw)


def _boom_once(monkeypatch, kind):
    real = STAGES[kind]
    calls = {"n": 0}

    def flaky(model, ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            real(model, ctx)  # do the work, then die before the checkpoint
            raise RuntimeError("killed")
        return real(model, ctx)

    monkeypatch.setitem(STAGES, kind, flaky)
    return calls


def _count(monkeypatch, kinds):
    calls = dict.fromkeys(kinds, 0)
    for kind in kinds:
        real = STAGES[kind]

        def counted(model, ctx, _real=real, _kind=kind):
            calls[_kind] += 1
            return _real(model, ctx)

        monkeypatch.setitem(STAGES, kind, counted)
    return calls


def test_custom_model_goes_train_prune_share_encode_with_the_users_config(tmp_path, digits_data):
    net = _net()
    model, rep = _run(net, digits_data, tmp_path, report=True)  # the report loads every stage
    assert rep["final"]["file_bytes"] == (tmp_path / "model.snn").stat().st_size
    assert set(rep["figures"]) >= {"sharing", "symbols"}
    man = read_manifest(tmp_path)
    assert [s["status"] for s in man["stages"]] == ["done"] * 4
    assert man["train_config"] == config_facts(CONFIG)
    train, prune, share, encode = (s["record"] for s in man["stages"])

    # every training used the user's set-up: optimizer, batch size, loss; lr scaled per stage
    (trained,) = train["history"]
    assert trained["config"] == {**config_facts(CONFIG), "seed": trained["config"]["seed"]}
    assert prune["retrain_config"]["optimizer"] == "adam"
    assert prune["retrain_config"]["lr"] == pytest.approx(2e-3 * 0.5)
    assert prune["retrain_config"]["batch_size"] == 64
    assert prune["retrain_config"]["label_smoothing"] == 0.05
    (finetune,) = share["history"]
    assert finetune["config"]["optimizer"] == "adam" and finetune["config"]["lr"] == 1e-3
    assert finetune["config"]["batch_size"] == 64 and finetune["config"]["label_smoothing"] == 0.05

    # BN: recalibrated after each pruning round, then folded before sharing
    assert [it["bn_recalibrated"] for it in prune["iterations"]] == [2, 2]
    assert share["fold_bn"] == {"folded": {"bn": "conv", "bn_fc": "fc"}, "skipped": {}}
    assert "recalibrate_bn" not in share  # nothing left to recalibrate

    # the .snn holds no BN tensors, and loads back (custom model) to the shared model
    snn = read_snn(tmp_path / "model.snn")
    assert not [k for k in snn.tensors if "running" in k or "bn" in k]
    assert encode["sha256"] and isinstance(model.bn, FoldedBatchNorm)
    shared, _ = load_model(tmp_path / "stages" / "02-share.pt", model=_net())
    x = digits_data.test[0][:64]
    torch.testing.assert_close(model(x), shared(x), atol=1e-5, rtol=0)
    weights = [model.conv.weight, model.fc.weight, model.out.weight]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros >= 0.5 - 1e-9  # still pruned to the target (global)
    assert net.bn.running_var.sum() > 0 and isinstance(net.bn, nn.BatchNorm2d)  # input untouched


def test_killed_stage_then_resume_gives_the_same_bytes(tmp_path, digits_data, monkeypatch):
    _run(_net(), digits_data, tmp_path / "a")
    reference = (tmp_path / "a" / "model.snn").read_bytes()
    _boom_once(monkeypatch, "share")
    with pytest.raises(RuntimeError, match="killed"):
        _run(_net(), digits_data, tmp_path / "b")
    assert [s["status"] for s in read_manifest(tmp_path / "b")["stages"]] == [
        "done", "done", "failed"]
    calls = _count(monkeypatch, ["train", "prune"])
    _run(_net(), digits_data, tmp_path / "b", resume=True)
    assert calls == {"train": 0, "prune": 0}  # reused from their checkpoints
    assert (tmp_path / "b" / "model.snn").read_bytes() == reference


def test_another_config_on_resume_redoes_every_stage(tmp_path, digits_data, monkeypatch):
    recipe = {"stages": [{"train": {"skip_if_trained": False}}, {"share": {"weight_bits": 3}}]}
    compress(_net(), digits_data, recipe, run_dir=tmp_path, quiet=True, report=False,
             config=CONFIG)
    calls = _count(monkeypatch, ["train", "share"])
    compress(_net(), digits_data, recipe, run_dir=tmp_path, quiet=True, report=False,
             config=CONFIG, resume=True)
    assert calls == {"train": 0, "share": 0}
    compress(_net(), digits_data, recipe, run_dir=tmp_path, quiet=True, report=False,
             config=CONFIG.replace(lr=1e-3), resume=True)
    assert calls == {"train": 1, "share": 1}
    assert read_manifest(tmp_path)["train_config"]["lr"] == 1e-3


def test_a_stage_overrides_optimizer_lr_and_batch_size(tmp_path, digits_data):
    recipe = {"stages": [
        {"prune": {"sparsity": 0.3, "retrain_epochs": 1, "optimizer": "sgd", "lr": 0.01,
                   "batch_size": 32, "recalibrate_bn": False}},
        {"share": {"weight_bits": 5, "finetune_epochs": 1, "batch_size": 16, "fold_bn": False}},
    ]}
    compress(_net(), digits_data, recipe, run_dir=tmp_path, quiet=True, report=False,
             config=CONFIG)
    prune, share = (s["record"] for s in read_manifest(tmp_path)["stages"])
    cfg = prune["retrain_config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"]) == ("sgd", 0.01, 32)
    assert cfg["loss"] == "cross_entropy" and cfg["weight_decay"] == 1e-5  # the rest inherited
    assert "bn_recalibrated" not in prune["iterations"][0]
    assert "fold_bn" not in share and share["history"][0]["config"]["batch_size"] == 16
    assert set(share["recalibrate_bn"]) == {"after_sharing", "after_finetune"}


def test_stage_lr_excludes_lr_factor_and_unset_keys_keep_recipes_unchanged():
    with pytest.raises(RecipeError, match=r"stages\[0\]\.prune\.lr: expected either lr"):
        validate_recipe({"stages": [{"prune": {"sparsity": 0.5, "lr": 0.1, "lr_factor": 0.5}}]})
    r = validate_recipe({"stages": [{"prune": {"sparsity": 0.5, "lr": 0.1}}]})
    assert "lr_factor" not in r.stages[0].settings
    assert validate_recipe(r.to_dict()).to_dict() == r.to_dict()
    plain = validate_recipe({"stages": [{"prune": {"sparsity": 0.5}}, {"share": {}}]})
    keys = json.dumps(plain.to_dict())
    for new in ("optimizer", "batch_size", "fold_bn", "recalibrate_bn"):
        assert f'"{new}"' not in keys.replace('"optimizer": "adam"', "")
