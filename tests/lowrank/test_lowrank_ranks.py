"""Rank rules: fixed, per-layer, energy fraction, global budget (greedy)."""

import numpy as np
import pytest
import torch
from torch import nn

from sparsenet.errors import SpecError
from sparsenet.lowrank import candidate_layers, energy_rank, factorize, lowrank_ranks, plan_ranks
from sparsenet.models import build_model


def test_energy_rank_known_spectrum():
    sv = np.array([3.0, 2.0, 1.0])  # energies 9/14, 13/14, 14/14
    assert energy_rank(sv, 0.5) == 1
    assert energy_rank(sv, 9 / 14) == 1
    assert energy_rank(sv, 0.9) == 2
    assert energy_rank(sv, 0.93) == 3
    assert energy_rank(sv, 1.0) == 3
    assert energy_rank(np.zeros(4), 0.9) == 1


@pytest.mark.parametrize("e", [0.3, 0.7, 0.9, 0.99])
def test_energy_plan_is_minimal_rank(e):
    model = build_model("lenet300", seed=0)
    for p in plan_ranks(model, energy=e, force=True):
        s2 = p.singular_values**2
        assert p.energy_kept >= e - 1e-12
        assert s2[: p.rank - 1].sum() / s2.sum() < e  # one less would not do
        assert p.rel_error == pytest.approx(np.sqrt(1 - p.energy_kept), abs=1e-9)


def test_fixed_and_per_layer_ranks():
    model = build_model("lenet300", seed=0)
    plan = {p.name: p for p in plan_ranks(model, rank=32)}
    assert plan["fc1"].rank == 32 and plan["fc2"].rank == 32
    # fc3 is 10×100: rank capped at 10, and 10·110 >= 1000, so it stays dense
    assert plan["fc3"].rank is None and "dense" in plan["fc3"].reason
    forced = {p.name: p for p in plan_ranks(model, rank=32, force=True)}
    assert forced["fc3"].rank == 10
    per = plan_ranks(model, rank={"fc2": 7})
    assert [(p.name, p.rank) for p in per] == [("fc2", 7)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank={"fc9": 3}), "fc9"),
        (dict(rank={"fc3": 11}), "rank <= 10"),
        (dict(rank={"fc1": 0}), "integer >= 1"),
        (dict(rank=2.5), "integer >= 1"),
        (dict(energy=0.0), r"\(0, 1\]"),
        (dict(budget=1.5), r"\(0, 1\]"),
        (dict(rank=3, energy=0.9), "exactly one"),
        (dict(), "exactly one"),
        (dict(budget=0.001), "too small"),
        (dict(budget=0.2, budget_error="nope"), "budget_error"),
    ],
)
def test_bad_rules_raise_spec_error(kwargs, match):
    with pytest.raises(SpecError, match=match):
        plan_ranks(build_model("lenet300", seed=0), **kwargs)


@pytest.mark.parametrize("budget", [0.05, 0.1, 0.2, 0.35, 0.6, 1.0])
@pytest.mark.parametrize("metric", ["relative", "absolute"])
def test_budget_respected(budget, metric):
    model = build_model("lenet5", seed=0)
    plan = plan_ranks(model, budget=budget, budget_error=metric)
    before = sum(p.params_before for p in plan)
    after = sum(p.params_after for p in plan)
    assert after <= budget * before
    for p in plan:  # a factorised layer always saves weights
        if p.rank is not None:
            assert p.rank * sum(p.shape) < p.shape[0] * p.shape[1]
    factorize(model, plan=plan)
    assert sum(p.numel() for p in model.parameters()) == after


def test_budget_error_decreases_with_budget():
    model = build_model("lenet300", seed=0)

    def err(b):  # the absolute squared error the default budget rule minimises
        return sum(
            (p.rel_error**2) * float((p.singular_values**2).sum())
            for p in plan_ranks(model, budget=b)
        )

    errs = [err(b) for b in (0.05, 0.1, 0.2, 0.4)]
    assert all(a >= b for a, b in zip(errs, errs[1:], strict=False))


def test_budget_goes_where_the_error_is():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 40, bias=False), nn.Linear(40, 40, bias=False))
    with torch.no_grad():  # layer 0 is exactly rank 3: rank 4+ removes nothing there
        model[0].weight.copy_(torch.randn(40, 3) @ torch.randn(3, 40))
    # room for 3 + 9 ranks of 80 weights each
    plan = plan_ranks(model, budget=12 * 80 / 3200)
    assert [p.rank for p in plan] == [3, 9]


def test_candidates_skip_factors_and_grouped_convs():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Linear(10, 10))
    assert list(candidate_layers(model)) == ["1"]
    with pytest.raises(SpecError, match="groups=2"):
        candidate_layers(model, ["0"])
    factorize(model, rank={"1": 2})
    assert lowrank_ranks(model) == {"1": 2}
    assert candidate_layers(model) == {}
