import pytest
import torch
from torch import nn

from sparsenet.errors import SpecError
from sparsenet.models import LeNet300
from sparsenet.regularize import (
    ActivationPenalty,
    WeightPenalty,
    elastic_net,
    group_lasso,
    kl_sparsity,
    l1_activation,
    l1_norm,
    l2_half,
    log1p_penalty,
)
from sparsenet.training import TrainConfig, fit


def _w():
    # includes exact zeros (subgradient 0) and a whole zero row (group lasso at 0)
    return torch.tensor(
        [[0.5, -1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [-0.25, 3.0, 1.0, -2.0]],
        dtype=torch.float64,
        requires_grad=True,
    )


def _grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    v = fn(x)
    (g,) = torch.autograd.grad(v, x)
    return v.detach(), g


def test_l1_closed_form():
    w = _w().detach()
    v, g = _grad(l1_norm, w)
    assert v == w.abs().sum() == 10.25
    assert torch.equal(g, torch.sign(w))


def test_l2_closed_form():
    w = _w().detach()
    v, g = _grad(l2_half, w)
    assert torch.isclose(v, 0.5 * (w**2).sum())
    assert torch.equal(g, w)


def test_elastic_closed_form():
    w = _w().detach()
    v, g = _grad(lambda t: elastic_net(t, 0.3), w)
    assert torch.isclose(v, 0.3 * w.abs().sum() + 0.35 * (w**2).sum())
    assert torch.allclose(g, 0.3 * torch.sign(w) + 0.7 * w)


def test_group_lasso_rows_and_columns():
    w = _w().detach()
    v, g = _grad(group_lasso, w)
    norms = w.pow(2).sum(1).sqrt()
    assert torch.isclose(v, norms.sum())
    expected = torch.where(norms[:, None] > 0, w / norms[:, None].clamp_min(1e-300), 0.0)
    assert torch.allclose(g, expected) and not torch.isnan(g).any()
    v_in, g_in = _grad(lambda t: group_lasso(t, "in"), w)
    cols = w.pow(2).sum(0).sqrt()
    assert torch.isclose(v_in, cols.sum()) and torch.allclose(g_in, w / cols)


def test_group_lasso_conv_filters():
    w = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    assert torch.isclose(group_lasso(w), sum(w[i].norm() for i in range(4)))
    assert torch.isclose(group_lasso(w, "in"), sum(w[:, j].norm() for j in range(3)))


def test_log1p_closed_form():
    z = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]], dtype=torch.float64)
    v, g = _grad(log1p_penalty, z)
    assert torch.isclose(v, torch.log(1 + z**2).sum() / 2)
    assert torch.allclose(g, 2 * z / (1 + z**2) / 2)


def test_l1_activation_closed_form():
    z = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]], dtype=torch.float64)
    v, g = _grad(l1_activation, z)
    assert v == 6.5 / 2 and torch.equal(g, torch.sign(z) / 2)


def test_kl_closed_form():
    z = torch.tensor([[0.1, 0.9, 0.3], [0.3, 0.5, 0.0]], dtype=torch.float64)
    rho = 0.2
    v, g = _grad(lambda t: kl_sparsity(t, rho), z)
    r = z.mean(0)
    kl = rho * torch.log(rho / r) + (1 - rho) * torch.log((1 - rho) / (1 - r))
    assert torch.isclose(v, kl.sum())
    assert torch.allclose(g, ((-rho / r + (1 - rho) / (1 - r)) / 2).expand_as(z))
    # at ρ̂ = ρ the penalty and its gradient vanish
    v0, g0 = _grad(lambda t: kl_sparsity(t, 0.3), torch.full((4, 2), 0.3, dtype=torch.float64))
    assert abs(float(v0)) < 1e-12 and g0.abs().max() < 1e-12


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


@pytest.mark.parametrize("kind", ["l1", "l2", "elastic", "group"])
def test_weight_penalty_value_and_gradient(kind):
    m = _tiny()
    pen = WeightPenalty(kind, 0.1, l1_ratio=0.25)
    v = pen.value(m)
    v.backward()
    fn = {
        "l1": l1_norm,
        "l2": l2_half,
        "elastic": lambda w: elastic_net(w, 0.25),
        "group": group_lasso,
    }[kind]
    expected = 0.1 * (fn(m[0].weight) + fn(m[2].weight))
    assert torch.isclose(v, expected)
    # biases are not penalised by default
    assert m[0].bias.grad is None and m[2].bias.grad is None
    w = m[0].weight.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(0.1 * fn(w), w)
    assert torch.allclose(m[0].weight.grad, g)


def test_weight_penalty_layers_and_bias():
    m = _tiny()
    v = WeightPenalty("l1", 1.0, layers=["2"], include_bias=True).value(m)
    assert torch.isclose(v, m[2].weight.abs().sum() + m[2].bias.abs().sum())
    # group lasso with biases: bias i joins row i's group
    v = WeightPenalty("group", 1.0, layers=["0"], include_bias=True).value(m)
    rows = torch.cat([m[0].weight, m[0].bias[:, None]], 1)
    assert torch.isclose(v, rows.norm(dim=1).sum())
    with pytest.raises(SpecError, match=r"unknown weight layer.*'fc9'"):
        WeightPenalty("l1", 1.0, layers=["fc9"]).value(m)
    with pytest.raises(SpecError, match="unknown kind"):
        WeightPenalty("l3", 1.0)
    with pytest.raises(SpecError, match="lam"):
        WeightPenalty("l1", -1.0)


def test_activation_penalty_hooks():
    m = LeNet300(in_features=64)
    x = torch.rand(5, 1, 8, 8)
    pen = ActivationPenalty("log1p", 0.5, layers=["fc1"]).attach(m)
    m.train()
    out = m(x)
    assert out.shape == (5, 10)
    z = torch.relu(m.fc1(x.flatten(1)))
    assert torch.allclose(pen.value(), 0.5 * torch.log1p(z**2).sum() / 5)
    assert pen.value() is None  # captured activations are consumed
    m.eval()
    m(x)
    assert pen.value() is None  # eval passes are not captured
    pen.detach()
    m.train()
    m(x)
    assert pen.value() is None
    with pytest.raises(SpecError, match="unknown layer"):
        ActivationPenalty("l1", 1.0, layers=["nope"]).attach(m)


def _train(callbacks, digits_data, epochs=1):
    torch.manual_seed(0)
    m = LeNet300(in_features=64)
    cfg = TrainConfig(epochs=epochs, batch_size=64, quiet=True, seed=3)
    fit(m, digits_data.subset(400).train, cfg, callbacks=callbacks)
    return m


def test_lambda_zero_is_bit_identical(digits_data):
    ref = _train([], digits_data)
    zero = _train(
        [
            WeightPenalty("l1", 0.0),
            WeightPenalty("group", 0.0),
            ActivationPenalty("log1p", 0.0),
            ActivationPenalty("kl", 0.0),
        ],
        digits_data,
    )
    for (k, a), (_, b) in zip(ref.state_dict().items(), zero.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # ... and the comparison can fail: a positive λ changes the weights
    pos = _train([WeightPenalty("l1", 1e-3), ActivationPenalty("log1p", 1e-3)], digits_data)
    assert not torch.equal(ref.fc1.weight, pos.fc1.weight)


def test_l2_penalty_matches_sgd_weight_decay(digits_data):
    torch.manual_seed(0)
    a, b = LeNet300(in_features=64), LeNet300(in_features=64)
    b.load_state_dict(a.state_dict())
    data = digits_data.subset(200).train
    cfg = TrainConfig(epochs=1, batch_size=50, quiet=True, momentum=0.0)
    fit(a, data, cfg.replace(weight_decay=0.01), callbacks=[])
    fit(b, data, cfg, callbacks=[WeightPenalty("l2", 0.01, include_bias=True)])
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_penalties_report_metrics_and_clean_up(digits_data):
    act = ActivationPenalty("l1", 1e-3)
    m = LeNet300(in_features=64)
    hist = fit(
        m,
        digits_data.subset(200).train,
        TrainConfig(epochs=1, quiet=True),
        callbacks=[WeightPenalty("l1", 1e-4), act],
    )
    assert hist[0]["penalty_l1"] > 0 and hist[0]["penalty_act_l1"] > 0
    assert act._handles == [] and all(not mod._forward_hooks for mod in m.modules())


def test_l1_activation_penalty_raises_activation_sparsity(digits_data):
    from sparsenet.regularize import activation_sparsity

    x = digits_data.x_test
    plain = _train([], digits_data, epochs=3)
    sparse = _train([ActivationPenalty("l1", 0.05)], digits_data, epochs=3)
    s_plain = activation_sparsity(plain, x)["total"]["sparsity"]
    s_sparse = activation_sparsity(sparse, x)["total"]["sparsity"]
    assert s_sparse > s_plain + 0.1


def test_weight_penalty_sees_parametrised_weight():
    from torch.nn.utils import parametrize

    class FixedMask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    m = _tiny()
    mask = (torch.arange(12).reshape(3, 4) % 3 != 0).float()
    parametrize.register_parametrization(m[0], "weight", FixedMask(mask))
    v = WeightPenalty("l1", 1.0, layers=["0"]).value(m)
    raw = m[0].parametrizations.weight.original
    assert torch.isclose(v, (raw * mask).abs().sum())
    v.backward()
    # pruned positions get no penalty gradient; kept ones get sign(w)
    assert torch.equal(raw.grad, torch.sign(raw.detach()) * mask)


def test_group_lasso_groups_output_channels_of_a_transposed_conv():
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(4, 6, 3, groups=2)  # weight (in=4, out/g=3, 3, 3)
    m = nn.Sequential(up)
    v = WeightPenalty("group", 1.0, include_bias=True).value(m)
    # output channel o of group g is up.weight[g*2:(g+1)*2, o % 3]: its filter and its bias
    want = sum(
        torch.cat([up.weight[(o // 3) * 2:(o // 3 + 1) * 2, o % 3].reshape(-1), up.bias[o:o + 1]]).norm()
        for o in range(6)
    )
    assert torch.isclose(v, want)
