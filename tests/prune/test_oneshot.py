"""Criteria and targets: exact counts, global vs per-layer ranking, Han's rule."""

import pytest
import torch
from torch import nn

from sparsenet.errors import SparsenetError, SpecError
from sparsenet.models import LeNet300
from sparsenet.prune import (
    OBD,
    Magnitude,
    Random,
    get_mask,
    hessian_diagonal,
    make_criterion,
    prunable_targets,
    prune,
    sparsity_report,
)


def net(seed=0):
    torch.manual_seed(seed)
    return LeNet300(in_features=64, hidden=(32, 16))


def layer_sparsity(model):
    return {r["name"]: r["sparsity"] for r in sparsity_report(model)["layers"]}


def test_per_layer_fractions_exact_and_lowest_magnitudes_go():
    model = net()
    w1 = model.fc1.weight.detach().clone()
    prune(model, "magnitude", per_layer={"fc1": 0.75, "fc2": 0.5})
    sp = layer_sparsity(model)
    assert sp["fc1"] == 0.75 and sp["fc2"] == 0.5 and sp["fc3"] == 0.0
    keep = get_mask(model.fc1)
    assert w1.abs()[keep].min() >= w1.abs()[~keep].max()


def test_layer_scope_uniform_and_global_scope_ranks_across_layers():
    model = net()
    prune(model, "magnitude", sparsity=0.5, scope="layer")
    assert all(abs(s - 0.5) < 1e-3 for s in layer_sparsity(model).values())
    model = net()
    with torch.no_grad():
        model.fc3.weight.add_(model.fc3.weight.sign())  # |w| > 1: a global ranking spares fc3
    prune(model, "magnitude", sparsity=0.5)
    sp = layer_sparsity(model)
    assert sp["fc3"] == 0.0
    total = sparsity_report(model)
    assert total["zeros"] == round(0.5 * total["size"])


def test_han_quality_threshold():
    model = net()
    w = model.fc2.weight.detach().clone()
    prune(model, "magnitude", quality=1.0)
    keep = get_mask(model.fc2)
    assert torch.equal(keep, w.abs() >= w.std())
    with pytest.raises(SpecError, match="magnitude only"):
        prune(net(), "random", quality=1.0)


def test_random_is_seeded_and_unbiased():
    a, b = net(), net()
    prune(a, "random", sparsity=0.6, seed=3)
    prune(b, "random", sparsity=0.6, seed=3)
    assert torch.equal(get_mask(a.fc1), get_mask(b.fc1))
    sp = layer_sparsity(a)
    assert abs(sp["fc1"] - 0.6) < 0.05 and abs(sp["fc2"] - 0.6) < 0.1


def test_obd_scores_are_half_h_w_squared(digits_data):
    model = net()
    data = (digits_data.x_train[:200], digits_data.y_train[:200])
    crit = OBD(data, form="lm")
    targets = prunable_targets(model)
    scores = crit.scores(model, targets)
    hd = hessian_diagonal(model, data, form="lm")
    for t, s in zip(targets, scores, strict=True):
        w = t.value.detach()
        assert torch.allclose(s, 0.5 * hd[f"{t.name}.weight"] * w * w)
    prune(model, "obd", sparsity=0.9, data=data)
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.9, abs=1e-5)
    # pruning a masked model again: masked weights have w=0, saliency 0, stay pruned
    m1 = get_mask(model.fc1).clone()
    prune(model, "obd", sparsity=0.95, data=data)
    assert not (get_mask(model.fc1) & ~m1).any()


def test_specs_rejected_with_named_values():
    with pytest.raises(SpecError, match="exactly one"):
        prune(net(), sparsity=0.5, quality=1.0)
    with pytest.raises(SpecError, match="1.5"):
        prune(net(), sparsity=1.5)
    with pytest.raises(SpecError, match="'fc9'"):
        prune(net(), per_layer={"fc9": 0.5})
    with pytest.raises(SpecError, match="unknown pruning method 'l0'"):
        prune(net(), "l0", sparsity=0.5)
    with pytest.raises(SparsenetError, match="needs data"):
        prune(net(), "obd", sparsity=0.5)
    with pytest.raises(SparsenetError, match="BatchNorm1d"):
        prune(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), "obd", sparsity=0.5,
              data=(torch.randn(4, 3), torch.zeros(4).long()), form="lm")


def test_make_criterion_names():
    assert isinstance(make_criterion("magnitude"), Magnitude)
    assert isinstance(make_criterion("random", seed=1), Random)
    c = Magnitude()
    assert make_criterion(c) is c
