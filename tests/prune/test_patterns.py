"""N:M patterns: at most N non-zeros per run of M, exact sparsity, for every criterion."""

import pytest
import torch

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SpecError
from sparsenet.models import LeNet300
from sparsenet.prune import (
    Mask,
    Pattern,
    PruneSpec,
    get_mask,
    parse_pattern,
    prunable_targets,
    prune,
    satisfies,
)
from sparsenet.prune.patterns import choose, choose_rows, nm_prune, split_count


def net(seed=0):
    torch.manual_seed(seed)
    return LeNet300(in_features=64, hidden=(30, 14))  # 64, 30 and 14 inputs: not all divisible


def calib(n=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 64, generator=g), torch.zeros(n, dtype=torch.long)


def test_parse_pattern_and_errors():
    assert parse_pattern("2:4") == Pattern(2, 4) and str(Pattern(1, 3)) == "1:3"
    assert parse_pattern("unstructured") is None and parse_pattern(None) is None
    for bad in ("4:2", "2:2", "0:4", "a:b", "2-4", "2:"):
        with pytest.raises(SpecError):
            parse_pattern(bad)
    with pytest.raises(SpecError, match="at least 0.5"):
        PruneSpec(sparsity=0.3, pattern="2:4")
    assert PruneSpec(pattern="2:4").sparsity == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_nm_prune_keeps_the_n_largest_of_every_run(seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(7, 18, generator=g)  # 4 runs of 4 and a tail of 2
    pr = nm_prune(s, Pattern(2, 4))
    assert satisfies(~pr, Pattern(2, 4))
    runs = s[:, :16].reshape(7, 4, 4)
    kept = (~pr[:, :16]).reshape(7, 4, 4)
    assert (kept.sum(2) == 2).all()
    assert ((runs * kept).abs().sum() > 0)
    assert (runs.masked_fill(~kept, float("inf")).amin(2) >= runs.masked_fill(kept, float("-inf")).amax(2)).all()
    assert not pr[:, 16:].any()  # a tail of 2 <= N loses nothing to the pattern


def test_choose_is_exact_and_never_revives():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 12, generator=g)
    forced = torch.zeros(5, 12, dtype=torch.bool)
    forced[0, :5] = True
    assert int(choose(s, 0, Pattern(2, 4), forced).sum()) == 32  # forced + the pattern: 8 + 4 x 6
    for quota in (32, 40, 55):
        pr = choose(s, quota, Pattern(2, 4), forced)
        assert int(pr.sum()) == quota and pr[forced].all() and satisfies(~pr, Pattern(2, 4))
    rows = choose_rows(s, torch.tensor(split_count(40, [12] * 5)), Pattern(2, 4), forced)
    assert int(rows.sum()) == 40 and satisfies(~rows, Pattern(2, 4)) and rows[forced].all()
    assert split_count(7, [3, 3, 3]) == [2, 3, 2] and sum(split_count(101, [7] * 33)) == 101


@pytest.mark.parametrize("method", ["magnitude", "random", "wanda", "sparsegpt", "obs"])
@pytest.mark.parametrize(("pattern", "sparsity", "scope"),
                         [("2:4", None, "layer"), ("2:4", 0.7, "layer"), ("1:3", 0.8, "global")])
def test_every_criterion_obeys_the_pattern_at_the_exact_sparsity(method, pattern, sparsity, scope):
    model = net()
    pat = parse_pattern(pattern)
    prune(model, method, sparsity=sparsity, scope=scope, pattern=pattern, data=calib(),
          calibration=96)
    s = sparsity if sparsity is not None else pat.min_sparsity
    total = pruned = 0
    for t in prunable_targets(model):
        keep = get_mask(t.module)
        assert satisfies(keep, pat), t.name
        assert bool((t.value.detach()[~keep] == 0).all())
        if scope == "layer":
            assert int((~keep).sum()) == round(s * keep.numel()), t.name
        total, pruned = total + keep.numel(), pruned + int((~keep).sum())
        assert t.module.parametrizations.weight[0].pattern == pattern
    if scope == "global":
        assert pruned == round(s * total)


def test_pattern_survives_checkpoints_and_old_specs_are_unchanged(tmp_path):
    model = net()
    prune(model, "magnitude", pattern="2:4")
    assert model.fc1.parametrizations.weight[0].spec() == {"shape": [30, 64], "pattern": "2:4"}
    save_model(model, tmp_path / "m.pt")
    back, _ = load_model(tmp_path / "m.pt")
    assert back.fc1.parametrizations.weight[0].pattern == "2:4"
    assert torch.equal(get_mask(back.fc1), get_mask(model.fc1))
    plain = Mask(torch.ones(3, 4, dtype=torch.bool))
    assert plain.spec() == {"shape": [3, 4]} and Mask.from_spec(plain.spec()).pattern is None


def test_iterative_rounds_hold_the_pattern_from_the_first():
    spec = PruneSpec(sparsity=0.75, pattern="2:4")
    assert spec.scaled(1 / 3).sparsity == 0.5 and spec.scaled(1.0).sparsity == pytest.approx(0.75)
    model = net()
    for k in (1, 2, 3):
        prune(model, "magnitude", sparsity=spec.scaled(k / 3).sparsity, pattern="2:4", scope="layer")
        assert satisfies(get_mask(model.fc1), Pattern(2, 4))
    assert int((~get_mask(model.fc1)).sum()) == round(0.75 * 30 * 64)
