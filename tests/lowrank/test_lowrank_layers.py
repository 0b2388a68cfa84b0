"""LowRankLinear / LowRankConv2d: exactness at full rank, Eckart–Young, counts, save/load."""

import pytest
import torch
from torch import nn

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SparsenetError
from sparsenet.lowrank import (
    LowRankConv2d,
    LowRankLinear,
    factorize,
    factorize_layer,
    finetune,
    lowrank_ranks,
    plan_ranks,
)
from sparsenet.models import build_model
from sparsenet.share import share_weights
from sparsenet.training import TrainConfig


def _sq_tail(w: torch.Tensor, r: int) -> float:
    s = torch.linalg.svdvals(w.reshape(w.shape[0], -1).double())
    return float((s[r:] ** 2).sum())


def test_linear_full_rank_equals_original():
    torch.manual_seed(0)
    layer = nn.Linear(20, 12)
    x = torch.randn(7, 20)
    low = factorize_layer(layer, 12)
    assert isinstance(low, LowRankLinear) and low.rank == 12
    torch.testing.assert_close(low(x), layer(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=(1, 2)),
        dict(kernel_size=3, padding="same", bias=False, padding_mode="reflect"),
    ],
)
def test_conv_full_rank_equals_original(kw):
    torch.manual_seed(1)
    layer = nn.Conv2d(3, 8, **kw)
    full = min(8, 3 * layer.kernel_size[0] * layer.kernel_size[1])
    low = factorize_layer(layer, full)
    assert isinstance(low, LowRankConv2d)
    assert isinstance(low.first, nn.Conv2d) and low.second.kernel_size == (1, 1)
    x = torch.randn(2, 3, 11, 9)
    torch.testing.assert_close(low(x), layer(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(low.dense_weight(), layer.weight.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("r", [1, 4, 9, 16])
def test_linear_eckart_young(r):
    torch.manual_seed(2)
    layer = nn.Linear(30, 17, dtype=torch.float64)
    low = factorize_layer(layer, r)
    err = float(((layer.weight.detach() - low.dense_weight()) ** 2).sum())
    expected = _sq_tail(layer.weight.detach(), r)
    assert err == pytest.approx(expected, rel=1e-6)
    # The bias is carried over unchanged.
    assert torch.equal(low.second.bias, layer.bias)


@pytest.mark.parametrize("r", [1, 3, 7])
def test_conv_eckart_young(r):
    torch.manual_seed(3)
    layer = nn.Conv2d(2, 9, 3, dtype=torch.float64)
    low = factorize_layer(layer, r)
    err = float(((layer.weight.detach() - low.dense_weight()) ** 2).sum())
    assert err == pytest.approx(_sq_tail(layer.weight.detach(), r), rel=1e-6)
    # The layer's outputs are those of the conv with the rank-r weight.
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    ref = nn.functional.conv2d(x, low.dense_weight(), layer.bias)
    torch.testing.assert_close(low(x), ref)


@pytest.mark.parametrize("bias", [True, False])
def test_exact_parameter_counts(bias):
    lin = factorize_layer(nn.Linear(50, 40, bias=bias), 6)
    assert sum(p.numel() for p in lin.parameters()) == 6 * (50 + 40) + 40 * bias
    conv = factorize_layer(nn.Conv2d(4, 10, (3, 5), bias=bias), 5)
    assert sum(p.numel() for p in conv.parameters()) == 5 * (4 * 3 * 5 + 10) + 10 * bias
    assert [tuple(p.shape) for p in conv.parameters()][:2] == [(5, 4, 3, 5), (10, 5, 1, 1)]


def test_grouped_conv_and_bad_rank_rejected():
    with pytest.raises(SparsenetError, match="groups=2"):
        factorize_layer(nn.Conv2d(4, 4, 3, groups=2), 2)
    with pytest.raises(SparsenetError, match="1..8"):
        factorize_layer(nn.Linear(8, 10), 9)
    with pytest.raises(SparsenetError, match="nn.Linear or nn.Conv2d"):
        factorize_layer(nn.Conv1d(2, 2, 3), 1)


def test_factorize_model_counts_and_arch():
    model = build_model("lenet5", seed=0)
    arch = dict(model.arch)
    before = {n: p.clone() for n, p in model.named_parameters()}
    plan = plan_ranks(model, rank={"conv2": 10, "fc1": 20})
    factorize(model, plan=plan)
    assert model.arch == arch
    assert lowrank_ranks(model) == {"conv2": 10, "fc1": 20}
    assert isinstance(model.conv2, LowRankConv2d) and isinstance(model.fc1, LowRankLinear)
    assert torch.equal(model.conv1.weight, before["conv1.weight"])  # untouched layers
    expected = sum(v.numel() for v in before.values()) - sum(
        p.params_before - p.params_after for p in plan
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    assert plan[0].params_after == 10 * (20 * 25 + 50) + 50
    assert plan[1].params_after == 20 * (800 + 500) + 500


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_save_load_round_trip(tmp_path, name):
    model = build_model(name, seed=0)
    factorize(model, energy=0.5)
    assert lowrank_ranks(model)  # something was factorised
    x = torch.rand(5, 1, 28, 28)
    path = tmp_path / "m.pt"
    save_model(model, path, metadata={"note": "x"})
    loaded, meta = load_model(path)
    assert meta == {"note": "x"}
    assert lowrank_ranks(loaded) == lowrank_ranks(model)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    model.eval()
    assert torch.equal(loaded(x), model(x))
    # and the file knows nothing but the architecture name: a bare model comes back
    assert loaded.arch == model.arch


def test_save_load_conv_geometry_round_trip(tmp_path):
    class Net(nn.Sequential):
        def __init__(self):
            super().__init__(
                nn.Conv2d(3, 16, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2)),
                nn.Flatten(),
            )

    torch.manual_seed(0)
    net = Net()
    factorize(net, rank=4)
    assert isinstance(net[0], LowRankConv2d)
    save_model(net, tmp_path / "c.pt")
    loaded, _ = load_model(tmp_path / "c.pt", model=Net())
    x = torch.randn(2, 3, 9, 10)
    assert torch.equal(loaded(x), net(x))
    assert loaded[0].spec() == net[0].spec()


def test_finetune_trains_both_factors(digits_data):
    model = build_model("lenet300", seed=0, in_features=64)
    factorize(model, rank={"fc1": 8, "fc2": 8})
    w0 = [model.fc1.first.weight.clone(), model.fc1.second.weight.clone()]
    x, y = digits_data.train
    hist = finetune(model, (x[:256], y[:256]), TrainConfig(epochs=1, quiet=True, lr=0.05))
    assert not torch.equal(model.fc1.first.weight, w0[0])
    assert not torch.equal(model.fc1.second.weight, w0[1])
    assert hist[0]["lowrank_drift"] > 0


class _HalfMask(nn.Module):
    """A stand-in for a later pruning stage: a registered mask parametrisation."""

    transform_kind = "test-lowrank-mask"

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, w):
        return w * self.mask

    def spec(self):
        return {"shape": list(self.mask.shape)}

    @classmethod
    def from_spec(cls, spec):
        return cls(spec["shape"])


def test_factors_take_a_later_parametrisation_and_round_trip(tmp_path):
    from torch.nn.utils import parametrize

    from sparsenet.checkpoint import register_parametrization

    register_parametrization(_HalfMask)
    model = build_model("lenet300", seed=0)
    factorize(model, rank={"fc1": 12})
    first = model.fc1.first
    p = _HalfMask(first.weight.shape)
    p.mask[:, ::2] = 0
    parametrize.register_parametrization(first, "weight", p)
    assert float((model.fc1.first.weight == 0).float().mean()) >= 0.5
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert parametrize.is_parametrized(loaded.fc1.first, "weight")
    x = torch.rand(3, 1, 28, 28)
    model.eval()
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"module": "fc9", "kind": "lowrank", "args": {"type": "linear"}}, "no layer 'fc9'"),
        ({"module": "fc1", "kind": "lowrank", "args": {"type": "conv3d"}}, "unknown layer type"),
    ],
)
def test_bad_transform_entry_is_a_checkpoint_error(entry, match):
    from sparsenet.checkpoint import apply_transforms
    from sparsenet.errors import CheckpointError

    with pytest.raises(CheckpointError, match=match):
        apply_transforms(build_model("lenet300"), [entry])


def test_parametrised_layer_is_factorised_from_its_effective_weight():
    from torch.nn.utils import parametrize

    torch.manual_seed(4)
    layer = nn.Linear(12, 9)
    p = _HalfMask(layer.weight.shape)
    p.mask[:, ::3] = 0
    parametrize.register_parametrization(layer, "weight", p)
    low = factorize_layer(layer, 9)  # full rank: exactly the masked layer
    x = torch.randn(4, 12)
    torch.testing.assert_close(low(x), layer(x), atol=1e-5, rtol=0)
    assert not parametrize.is_parametrized(low.first)


def test_weight_sharing_on_the_factors_round_trips(tmp_path):
    model = build_model("lenet5", seed=0)
    factorize(model, rank={"conv2": 8, "fc1": 16})
    share_weights(model, "conv=6,fc=4")
    # each factor is its own shared layer: at most 2**bits distinct weight values
    assert len(torch.unique(model.fc1.first.weight.detach())) <= 16
    assert len(torch.unique(model.conv2.second.weight.detach())) <= 64
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    assert torch.equal(loaded(x), model(x))
