"""Masks: neutral when all-ones, zeros that survive training, checkpoints, bake."""

import pytest
import torch
from torch import nn

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SpecError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.prune import Mask, apply_mask, bake, get_mask, prune, sparsity_report
from sparsenet.training import TrainConfig, fit


def small_lenet300(seed=0):
    torch.manual_seed(seed)
    return LeNet300(in_features=64, hidden=(32, 16))


def test_all_ones_mask_changes_neither_outputs_nor_gradients():
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for make in (small_lenet300, lambda: LeNet5(input_size=8, padding=2)):
        torch.manual_seed(1)
        ref = make()
        torch.manual_seed(1)
        masked = make()
        for m in masked.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                apply_mask(m, torch.ones_like(m.weight, dtype=torch.bool))
                apply_mask(m, torch.ones_like(m.bias, dtype=torch.bool), "bias")
        out_r, out_m = ref(x), masked(x)
        assert torch.equal(out_r, out_m)
        nn.functional.cross_entropy(out_r, y).backward()
        nn.functional.cross_entropy(out_m, y).backward()
        for name, m_r in ref.named_modules():
            if isinstance(m_r, (nn.Linear, nn.Conv2d)):
                m_m = masked.get_submodule(name)
                for t in ("weight", "bias"):
                    g_m = m_m.parametrizations[t].original.grad
                    assert torch.equal(getattr(m_r, t).grad, g_m), (name, t)


def test_pruned_weights_stay_zero_through_sgd_momentum_weight_decay(digits_data):
    model = small_lenet300()
    prune(model, "magnitude", sparsity=0.8)
    zero_before = {n: (m.weight == 0) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    # momentum buffers would carry old updates; decay would pull; masks must hold anyway
    cfg = TrainConfig(epochs=1, lr=0.1, momentum=0.9, weight_decay=5e-3, quiet=True, batch_size=64)
    fit(model, digits_data.train, cfg)
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            assert (m.weight[zero_before[n]] == 0).all(), n
            assert zero_before[n].any()
            # the surviving weights did train
    assert sparsity_report(model)["sparsity"] >= 0.8


def test_gradient_reaching_original_is_masked():
    lin = nn.Linear(5, 3)
    keep = torch.rand(3, 5) > 0.5
    apply_mask(lin, keep)
    lin(torch.randn(4, 5)).sum().backward()
    g = lin.parametrizations.weight.original.grad
    assert (g[~keep] == 0).all() and (g[keep] != 0).any()


def test_combining_masks_never_revives():
    lin = nn.Linear(6, 4)
    a = torch.rand(4, 6) > 0.3
    b = torch.rand(4, 6) > 0.3
    apply_mask(lin, a)
    apply_mask(lin, b)
    assert torch.equal(get_mask(lin), a & b)
    assert len(lin.parametrizations.weight) == 1
    prune(lin, "magnitude", sparsity=0.1, scope="layer")  # lower target than existing
    assert torch.equal(get_mask(lin) & ~(a & b), torch.zeros_like(a))
    with pytest.raises(SpecError, match="shape"):
        apply_mask(lin, torch.ones(2, 2, dtype=torch.bool))


def test_save_load_keeps_masks(tmp_path):
    model = small_lenet300()
    prune(model, "magnitude", per_layer={"fc1": 0.9, "fc2": 0.5, "fc3.bias": 0.5})
    path = save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(path)
    assert get_mask(model.fc3) is None and get_mask(loaded.fc3) is None
    for name in ("fc1", "fc2"):
        a, b = model.get_submodule(name), loaded.get_submodule(name)
        assert torch.equal(get_mask(a), get_mask(b))
        assert torch.equal(a.weight, b.weight)
    assert torch.equal(get_mask(model.fc3, "bias"), get_mask(loaded.fc3, "bias"))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert isinstance(loaded.fc1.parametrizations.weight[0], Mask)
    # the mask is a 1-byte bool buffer, not a float copy
    assert loaded.fc1.parametrizations.weight[0].mask.dtype == torch.bool


def test_bake_keeps_parameter_identity_and_values():
    model = small_lenet300()
    before = model.fc1.weight
    prune(model, "magnitude", sparsity=0.7)
    assert model.fc1.parametrizations.weight.original is before
    effective = model.fc1.weight.detach().clone()
    opt_params = list(model.parameters())
    bake(model)
    assert model.fc1.weight is before
    assert isinstance(model.fc1.weight, nn.Parameter)
    assert torch.equal(model.fc1.weight.detach(), effective)
    assert not hasattr(model.fc1, "parametrizations")
    assert type(model.fc1) is nn.Linear
    assert {id(p) for p in model.parameters()} == {id(p) for p in opt_params}
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.7, abs=1e-4)


def test_sparsity_report_counts():
    lin = nn.Linear(10, 10)
    keep = torch.ones(10, 10, dtype=torch.bool)
    keep[:3] = False
    apply_mask(lin, keep)
    rep = sparsity_report(nn.Sequential(lin))
    assert rep["layers"][0]["masked"] == 30 and rep["zeros"] >= 30
    assert rep["sparsity"] == rep["zeros"] / 100
    assert rep["compression"] == pytest.approx(100 / (100 - rep["zeros"]))
