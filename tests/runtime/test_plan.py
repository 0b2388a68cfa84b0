"""Whole-model plans: equal to the dense runtime and to per-module execution."""

import copy

import pytest
import torch
from runtime_helpers import assert_rel_close
from torch import nn

import sparsenet
from sparsenet.coding import save_snn
from sparsenet.errors import CorruptFileError
from sparsenet.runtime import SparseConv2d, SparseLinear, attach_plan, detach_plan, plan_of


def prune_share(model: nn.Module, density: float, k: int = 16, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight
                cb = torch.linspace(float(w.min()), float(w.max()), k)
                cb = cb[cb != 0]
                q = cb[(w[..., None] - cb).abs().argmin(-1)]
                w.copy_(torch.where(torch.rand(w.shape, generator=g) < density, q, torch.zeros(())))
    return model


class ResBN(nn.Module):
    """conv-BN-ReLU, a residual add, GELU, pooling, flatten, Linear-BN1d-tanh, an odd module."""

    def __init__(self, odd: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.odd = odd or nn.Identity()
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d((2, 2))
        self.fc1 = nn.Linear(32, 16)
        self.bn3 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = nn.functional.gelu(self.bn2(self.conv2(h)) + h)
        h = self.gap(self.pool(self.odd(h)))
        h = torch.flatten(h, 1)
        return self.fc2(torch.tanh(self.bn3(self.fc1(h))))


def resbn(odd=None) -> nn.Module:
    torch.manual_seed(0)
    m = prune_share(ResBN(odd), 0.4)
    with torch.no_grad():
        for bn in (m.bn1, m.bn2, m.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        m.fc1.weight[:, 3] = 0  # an empty column
        m.conv2.weight[2] = 0  # an all-zero output channel
    return m.eval()


def sparsify(model: nn.Module) -> nn.Module:
    """Swap every Linear/Conv2d for its sparse layer (as load(runtime='sparse') does)."""
    for name, m in list(model.named_modules()):
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        child = name.rpartition(".")[2]
        if type(m) is nn.Linear:
            setattr(parent, child, SparseLinear.from_dense(m.weight.detach(), None if m.bias is None else m.bias.detach()))
        elif type(m) is nn.Conv2d:
            setattr(parent, child, SparseConv2d.from_conv(m))
    return model


@pytest.mark.parametrize("name, shape", [("lenet300", (1, 28, 28)), ("lenet5", (1, 28, 28))])
@pytest.mark.parametrize("batch", [1, 5, 16])
def test_lenets_sparse_equals_dense(tmp_path, name, shape, batch):
    torch.manual_seed(1)
    m = prune_share(sparsenet.build_model(name), 0.08)
    save_snn(m, tmp_path / "m.snn")
    dense = sparsenet.load(tmp_path / "m.snn")
    sparse = sparsenet.load(tmp_path / "m.snn", runtime="sparse")
    planned = plan_of(sparse)
    assert planned is not None and planned.plans  # built and warmed at load
    assert "fallback" not in planned.describe()
    x = torch.rand(batch, *shape)
    with torch.no_grad():
        ref = dense(x)
        assert_rel_close(sparse(x), ref)
        assert_rel_close(detach_plan(sparse)(x), ref)  # per-module execution agrees


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_bn_residual_model_plan_and_fallback(batch):
    ref_model = resbn()
    x = torch.randn(batch, 3, 8, 8)
    with torch.no_grad():
        ref = ref_model(x)
        sparse = sparsify(copy.deepcopy(ref_model))
        per_module = sparse(x)
        planned = attach_plan(sparse, input_shape=(3, 8, 8))
        out = sparse(x)
    text = planned.describe()
    assert "+bn" in text and "add+gelu" in text and "fallback" not in text
    assert_rel_close(out, ref)
    assert_rel_close(per_module, ref)


class Odd(nn.Module):  # not a known node: runs as itself between compiled segments
    def forward(self, x):
        return x * 0.5 + 0.1


def test_per_node_fallback_equals_plan():
    ref_model = resbn(Odd())
    sparse = sparsify(copy.deepcopy(ref_model))
    planned = attach_plan(sparse, input_shape=(3, 8, 8))
    assert "per-node fallback: mul" in planned.describe()  # x * 0.5 runs in torch
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert_rel_close(sparse(x), ref_model(x))


def test_untraceable_model_runs_per_module():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    m = sparsify(Branchy())
    planned = attach_plan(m)
    x = torch.rand(2, 6)
    with torch.no_grad():
        assert torch.equal(m(x), detach_plan(m)(x))
    assert "per-module execution" in planned.describe()


def test_double_to_state_dict_eval(tmp_path):
    torch.manual_seed(2)
    m = prune_share(sparsenet.build_model("lenet300", in_features=64), 0.1)
    save_snn(m, tmp_path / "m.snn")
    s = sparsenet.load(tmp_path / "m.snn", runtime="sparse")
    x = torch.rand(3, 64)
    with torch.no_grad():
        y32 = s(x)
        s.double()
        y64 = s(x.double())
        assert y64.dtype == torch.float64
        assert_rel_close(y64, m.double()(x.double()))
        s.float()
        assert_rel_close(s(x), y32)
        # state_dict round trip into a fresh sparse model, in place: the plan sees it
        s2 = sparsenet.load(tmp_path / "m.snn", runtime="sparse")
        with torch.no_grad():
            s2.fc3.bias.add_(1.0)
        assert_rel_close(s2(x), y32 + 1.0)
        s2.load_state_dict(s.state_dict())
        assert_rel_close(s2(x), y32)
    s.train()
    assert s(x).shape == (3, 10)  # train mode: the modules run
    assert copy.deepcopy(s.eval())(x).shape == (3, 10)


def test_threads_option_same_output(tmp_path):
    torch.manual_seed(3)
    m = prune_share(sparsenet.build_model("lenet300", in_features=64), 0.1)
    save_snn(m, tmp_path / "m.snn")
    x = torch.rand(32, 64)
    with torch.no_grad():
        a = sparsenet.load(tmp_path / "m.snn", runtime="sparse", threads=1)(x)
        b = sparsenet.load(tmp_path / "m.snn", runtime="sparse", threads=2)(x)
    assert torch.equal(a, b)  # rows are split over threads, each summed in the same order


def test_threads_set_after_first_call_take_effect(tmp_path, monkeypatch):
    """``plan_of(model).threads = N`` after the fast path knows the shape still applies."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread on this machine")
    torch.manual_seed(3)
    save_snn(prune_share(sparsenet.build_model("lenet300", in_features=64), 0.1), tmp_path / "m.snn")
    m = sparsenet.load(tmp_path / "m.snn", runtime="sparse", threads=1)
    x = torch.rand(32, 64)
    seen: list[int] = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda n: (seen.append(n), real(n)))
    with torch.no_grad():
        a = m(x)
        assert seen == []  # one thread: numba's count untouched
        plan_of(m).threads = 2
        b = m(x)
    assert seen and seen[0] == 2 and torch.equal(a, b)


def test_corrupt_file_fails_before_any_kernel(tmp_path, monkeypatch):
    torch.manual_seed(4)
    m = prune_share(sparsenet.build_model("lenet300", in_features=64), 0.1)
    save_snn(m, tmp_path / "m.snn")
    data = bytearray((tmp_path / "m.snn").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.snn").write_bytes(bytes(data))
    from sparsenet.runtime import plan as plan_mod

    def boom(*a, **k):
        raise AssertionError("a kernel ran on a corrupt file")

    monkeypatch.setattr(plan_mod.K, "run_plan", boom)
    with pytest.raises(CorruptFileError):
        sparsenet.load(tmp_path / "bad.snn", runtime="sparse")


def test_plan_follows_parameters_whose_data_moved():
    """``.double()`` then ``.float()`` keep a Parameter's identity but move its data: the plan
    must notice (it addresses the old storage) and rebuild, not read freed memory."""
    torch.manual_seed(4)
    ref = resbn()  # dense Linear/Conv2d layers and BatchNorm: the plan addresses Parameters
    m = copy.deepcopy(ref)
    attach_plan(m, input_shape=(3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = m(x)
        ids = [id(p) for p in m.parameters()]
        m.double().float()
        assert [id(p) for p in m.parameters()] == ids  # same objects, new storage
        for p in m.parameters():
            p.add_(0.0)  # touch the new storage
        assert_rel_close(m(x), before)
        assert_rel_close(m(x[:, :, :, :].transpose(2, 3).transpose(2, 3)), ref(x))
        xt = torch.randn(8, 8, 3, 5).permute(3, 2, 0, 1)  # a non-contiguous input
        assert_rel_close(m(xt), ref(xt))
