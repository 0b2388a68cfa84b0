"""OBD's second-order back-propagation against autograd's exact Hessian diagonal."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsenet.errors import SparsenetError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.prune.obd import hessian_diagonal, module_chain


def exact_diagonal(model, param, x, y, loss, idx=None):
    """∂²E/∂w_k² by double back-propagation, one weight at a time (E = mean loss)."""
    out = model(x)
    E = F.cross_entropy(out, y) if loss == "ce" else F.mse_loss(out, y)
    (g,) = torch.autograd.grad(E, param, create_graph=True)
    g = g.flatten()
    idx = range(g.numel()) if idx is None else idx
    diag = []
    for k in idx:
        (row,) = torch.autograd.grad(g[k], param, retain_graph=True)
        diag.append(row.flatten()[k])
    return torch.stack(diag)


def rel_err(a, b):
    """Largest element-wise relative error (entries within 1e-12 of the scale count as 0)."""
    a, b = a.detach(), b.detach()
    scale = b.abs().max().clamp_min(1e-300)
    return float(((a - b).abs() / b.abs().clamp_min(1e-12 * scale)).max())


def test_one_hidden_layer_tanh_mse_full_form_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(50, 4, dtype=torch.float64)
    t = torch.randn(50, 3, dtype=torch.float64)
    hd = hessian_diagonal(model, (x, t), loss="mse", form="full", batch_size=16)
    for name, p in model.named_parameters():
        exact = exact_diagonal(model, p, x, t, "mse")
        assert rel_err(hd[name].flatten(), exact) < 1e-6, name
    # the f'' term matters here: the LM form differs on the first layer
    lm = hessian_diagonal(model, (x, t), loss="mse", form="lm")
    assert rel_err(lm["0.weight"], hd["0.weight"]) > 1e-3
    assert torch.equal(lm["2.weight"], hd["2.weight"]) or rel_err(lm["2.weight"], hd["2.weight"]) < 1e-12


def _digits_like(n, shape, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64), torch.randint(
        0, classes, (n,), generator=g
    )


NETS = {
    "lenet300": lambda: LeNet300(in_features=64, hidden=(20, 12)),
    "lenet5": lambda: LeNet5(in_channels=1, input_size=8, padding=2),
    "tanh_avgpool_sigmoid": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.Sigmoid()),  # nested Sequential
        nn.Identity(),
        nn.Linear(10, 5),
    ),
}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("form", ["full", "lm"])
def test_last_layer_cross_entropy_is_exact(net, form):
    torch.manual_seed(1)
    model = NETS[net]().double()
    classes = 5 if net == "tanh_avgpool_sigmoid" else 10
    x, y = _digits_like(40, (1, 8, 8), classes)
    hd = hessian_diagonal(model, (x, y), loss="ce", form=form, batch_size=15)
    last_name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    w = last.weight
    idx = torch.randperm(w.numel(), generator=torch.Generator().manual_seed(0))[:60].tolist()
    exact = exact_diagonal(model, w, x, y, "ce", idx)
    assert rel_err(hd[f"{last_name}.weight"].flatten()[idx], exact) < 1e-6
    exact_b = exact_diagonal(model, last.bias, x, y, "ce")
    assert rel_err(hd[f"{last_name}.bias"], exact_b) < 1e-6
    # every weight of every layer gets a diagonal of its own shape
    for name, p in model.named_parameters():
        assert hd[name].shape == p.shape
        if form == "lm":
            assert (hd[name] >= 0).all(), name


def test_lm_form_nonnegative_and_full_can_be_negative():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    x, y = torch.randn(200, 5), torch.randint(0, 4, (200,))
    lm = hessian_diagonal(model, (x, y), form="lm")
    full = hessian_diagonal(model, (x, y), form="full")
    assert all((v >= 0).all() for v in lm.values())
    assert any((v < 0).any() for v in full.values())


@pytest.mark.parametrize(
    "module,shape",
    [
        (nn.MaxPool2d(2), (2, 3, 6, 6)),
        (nn.MaxPool2d(3, stride=1), (2, 2, 5, 5)),  # overlapping windows
        (nn.AvgPool2d(2), (2, 3, 6, 6)),
        (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 5, 5)),
        (nn.AvgPool1d(3, stride=2, padding=1), (2, 2, 7)),
        (nn.Flatten(), (2, 3, 4, 4)),
    ],
)
def test_routing_rules_equal_squared_jacobian(module, shape):
    """diag(Jᵀ diag(h) J) = (J∘J)ᵀ h exactly, for each non-weight module's rule."""
    torch.manual_seed(3)
    x = torch.randn(*shape, dtype=torch.float64)
    n_out = module(x)[0].numel()
    last = shape[-1]
    # identity Linear on the last axis below `module`: its weight diagonal reads h at x
    model = nn.Sequential(nn.Linear(last, last, bias=False), module, nn.Flatten(), nn.Linear(n_out, 3))
    model = model.double()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(last))
    y = torch.randint(0, 3, (shape[0],))
    hd = hessian_diagonal(model, (x, y), loss="ce", form="lm", batch_size=shape[0])
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    h_in = (p * (1 - p)) @ model[3].weight.detach() ** 2  # (B, n_out), h at module's output
    ref = torch.zeros(last, last, dtype=torch.float64)
    for b in range(shape[0]):
        J = torch.autograd.functional.jacobian(lambda v: module(v[None]).flatten(), x[b])
        h_x = ((J.reshape(n_out, -1) ** 2).T @ h_in[b]).reshape(shape[1:])
        ref += torch.einsum("...o,...c->oc", h_x, x[b] ** 2)
    assert rel_err(hd["0.weight"] * shape[0], ref) < 1e-10


def test_unsupported_module_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(SparsenetError, match="BatchNorm1d"):
        hessian_diagonal(model, (torch.randn(8, 4), torch.randint(0, 2, (8,))), form="lm")
    with pytest.raises(SparsenetError, match="form"):
        hessian_diagonal(model[:1], (torch.randn(2, 4), torch.zeros(2).long()), form="x")
    with pytest.raises(SparsenetError, match="no Linear or Conv2d"):
        module_chain(nn.Sequential(nn.ReLU()))
