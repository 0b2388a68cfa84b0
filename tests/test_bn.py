import copy

import pytest
import torch
from torch import nn

from sparsenet.bn import FoldedBatchNorm, fold_bn, has_batchnorm, recalibrate_bn
from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SparsenetError
from sparsenet.prune import PruneSchedule, prune, prune_iterative
from sparsenet.training import TrainConfig, evaluate, fit


def _randomise_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.1)
            if m.affine:
                m.weight.data.copy_(torch.randn(c, generator=g))
                m.bias.data.copy_(torch.randn(c, generator=g))
    return model.eval()


def _conv_net(bias, affine=True):
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=bias), nn.BatchNorm2d(6, affine=affine),
                         nn.ReLU(), nn.Conv2d(6, 4, 3, groups=2, bias=bias), nn.BatchNorm2d(4),
                         nn.Flatten(), nn.Linear(4 * 36, 10))


def _linear_net(bias):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16, bias=bias), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 10))


@pytest.mark.parametrize("make", [_conv_net, _linear_net], ids=["conv-bn2d", "linear-bn1d"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("pruned", [False, True])
def test_folding_changes_no_prediction(make, bias, pruned):
    torch.manual_seed(0)
    model = _randomise_bn(make(bias))
    if pruned:
        prune(model, sparsity=0.6)
    x = torch.randn(32, 1, 8, 8)
    ref = model(x)
    report = {}
    folded = fold_bn(copy.deepcopy(model), report=report)
    assert report["skipped"] == {} and len(report["folded"]) == sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not has_batchnorm(folded)
    assert all(isinstance(folded.get_submodule(n), FoldedBatchNorm) for n in report["folded"])
    torch.testing.assert_close(folded(x), ref, atol=1e-5, rtol=0)
    if pruned:  # the masks survive: pruned weights are still exactly zero
        for into in report["folded"].values():
            layer = folded.get_submodule(into)
            mask = layer.parametrizations.weight[0].mask
            assert bool((layer.weight[~mask] == 0).all()) and not mask.all()


def test_folding_without_affine_parameters():
    torch.manual_seed(1)
    model = _randomise_bn(_conv_net(bias=False, affine=False))
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(fold_bn(copy.deepcopy(model), report={})(x), model(x), atol=1e-5,
                               rtol=0)


def test_folded_model_saves_no_bn_tensors_and_reloads_into_a_bare_model(tmp_path):
    torch.manual_seed(2)
    model = _randomise_bn(_conv_net(bias=False))
    prune(model, sparsity=0.5)
    fold_bn(model, report={})
    assert not any("running_" in k or "num_batches" in k for k in model.state_dict())
    save_model(model, tmp_path / "m.pt")
    again, _ = load_model(tmp_path / "m.pt", model=_conv_net(bias=False))  # bias created again
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(again(x), model(x))
    assert isinstance(again[1], FoldedBatchNorm) and again[0].bias is not None


class _Residual(nn.Module):
    """conv → bn, and the conv's output also feeds the sum: not foldable."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.after_relu = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.after_relu(torch.relu(self.bn(y) + y))


class _Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace it) around a foldable Sequential."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:
            y = self.bn(self.conv(y))
        return y


def test_unfoldable_batchnorms_are_left_and_named():
    torch.manual_seed(3)
    model = _randomise_bn(_Residual())
    x = torch.randn(2, 4, 6, 6)
    ref = model(x)
    report = {}
    fold_bn(model, report=report)
    assert report["folded"] == {}
    assert "conv is used by more than this BatchNorm" in report["skipped"]["bn"]
    assert "not the output of a Linear/Conv" in report["skipped"]["after_relu"]
    assert torch.equal(model(x), ref)
    with pytest.raises(SparsenetError, match="cannot fold BatchNorm"):
        fold_bn(model, strict=True)
    with pytest.warns(UserWarning, match="BatchNorm not folded"):
        fold_bn(model)


def test_untraceable_model_folds_inside_its_traceable_submodules():
    torch.manual_seed(4)
    model = _randomise_bn(_Untraceable())
    x = torch.randn(3, 1, 6, 6)
    ref = model(x)
    report = {}
    fold_bn(model, report=report)
    assert report["folded"] == {"body.1": "body.0"}
    assert "cannot be traced" in report["skipped"]["bn"]
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)


def test_recalibration_computes_the_data_statistics_and_restores_modes():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8, momentum=0.3),
                          nn.Dropout(0.5), nn.Linear(8, 3))
    _randomise_bn(model)
    model.train()
    model[-1].eval()
    params = {k: v.clone() for k, v in model.named_parameters()}
    x = torch.randn(50, 1, 8, 8)
    assert recalibrate_bn(model, (x, None), batches=1, batch_size=100) == 1
    with torch.no_grad():
        h = model[1](model[0](x))  # (50, 8) the BatchNorm's input
    torch.testing.assert_close(model[2].running_mean, h.mean(0))
    torch.testing.assert_close(model[2].running_var, h.var(0, unbiased=True))
    assert model[2].momentum == 0.3
    assert [m.training for m in model] == [True, True, True, True, False]
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert recalibrate_bn(nn.Linear(2, 2), torch.randn(4, 2)) == 0


def _bn_net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def test_recalibration_restores_accuracy_after_pruning(digits_data):
    torch.manual_seed(0)
    model = _bn_net()
    fit(model, digits_data.train, TrainConfig(epochs=2, lr=0.05, quiet=True))
    stale, recal = copy.deepcopy(model), copy.deepcopy(model)
    hist_stale, hist_recal = (
        prune_iterative(m, digits_data.train, sparsity=0.9, val=digits_data.test,
                        schedule=PruneSchedule(steps=1, retrain_epochs=0, recalibrate_bn=flag),
                        config=TrainConfig(quiet=True)).history
        for m, flag in ((stale, False), (recal, True))
    )
    assert "bn_recalibrated" not in hist_stale[0] and hist_recal[0]["bn_recalibrated"] == 3
    acc_stale = evaluate(stale, digits_data.test)["accuracy"]
    acc_recal = evaluate(recal, digits_data.test)["accuracy"]
    assert acc_recal == hist_recal[0]["pruned_acc"]  # recalibrated before evaluation
    assert acc_recal > acc_stale + 0.05, (acc_stale, acc_recal)
