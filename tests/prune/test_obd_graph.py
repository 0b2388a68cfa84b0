"""OBD's graph fall-backs (Gauss–Newton, Hutchinson) against autograd's exact Hessian."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsenet.errors import SparsenetError
from sparsenet.models import LeNet300, model_for_dataset
from sparsenet.prune import OBD, apply_mask, prune, resolve_form
from sparsenet.prune.obd import hessian_diagonal
from sparsenet.prune.obd_graph import effective_tensors


class SkipNet(nn.Module):
    """conv → BN (eval) → ReLU → conv, plus a 1×1 skip; max-pool, avg-pool, linear head."""

    def __init__(self, act=nn.ReLU):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = act()
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(1, 3, 1)
        self.act2 = act()
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        h = self.conv2(self.act(self.bn(self.conv1(x))))
        h = self.avg(self.pool(self.act2(h + self.skip(x))))
        return self.fc(h.flatten(1))


class TinyAttention(nn.Module):
    """Token embedding, pre-LN MultiheadAttention with a residual, mean pooling, head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.ln = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.embed(x)
        a = self.ln(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        return self.head(h.mean(1))


def _skipnet(act=nn.ReLU, seed=0):
    torch.manual_seed(seed)
    m = SkipNet(act).double()
    with torch.no_grad():  # non-trivial running statistics and affine for the eval-mode BN
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.normal_()
        m.bn.bias.normal_()
    return m.eval()


def _data(n, shape, classes, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(
        0, classes, (n,), generator=g
    )


def _loss(z, y, loss):
    if loss == "ce":
        return F.cross_entropy(z, y)
    return F.mse_loss(z, F.one_hot(y, z.shape[1]).to(z.dtype))


def exact_hessian(model, x, y, loss="ce"):
    """(names, shapes, full Hessian of the mean loss over every parameter, P × P)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    sizes = [p.numel() for p in params]

    def E(flat):
        parts = torch.split(flat, sizes)
        ps = {n: t.reshape(p.shape) for n, t, p in zip(names, parts, params, strict=True)}
        return _loss(functional_call(model, ps, (x,)), y, loss)

    H = torch.autograd.functional.hessian(E, torch.cat([p.flatten() for p in params]))
    return names, [p.shape for p in params], H


def split_diag(names, shapes, vec):
    parts = torch.split(vec, [s.numel() for s in shapes])
    return {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}


def flat(d, names):
    return torch.cat([d[n].flatten() for n in names])


def rel_err(a, b):
    scale = b.abs().max().clamp_min(1e-300)
    return float(((a - b).abs() / b.abs().clamp_min(1e-12 * scale)).max())


def explicit_gauss_newton(model, x, classes):
    """(1/N) Σ_n diag(J_nᵀ (diag p − ppᵀ) J_n) from each sample's full output Jacobian."""
    params = dict(model.named_parameters())
    names = list(params)
    ref = torch.zeros(sum(p.numel() for p in params.values()), dtype=torch.float64)
    for n in range(len(x)):
        x1 = x[n : n + 1]

        def z_of(*vals, x1=x1):
            return functional_call(model, dict(zip(names, vals, strict=True)), (x1,))[0]

        J = torch.autograd.functional.jacobian(z_of, tuple(params.values()))
        J = torch.cat([j.reshape(classes, -1) for j in J], dim=1)  # (C, P)
        p = torch.softmax(z_of(*params.values()).detach(), 0)
        ref += torch.einsum("cp,cd,dp->p", J, torch.diag(p) - torch.outer(p, p), J)
    return ref / len(x)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_gauss_newton_is_the_exact_diagonal_for_a_relu_skip_net(loss):
    """Piecewise-linear net (ReLU, max/avg pool, eval BN, residual add): GN diag = H diag."""
    model = _skipnet()
    x, y = _data(24, (1, 6, 6), 4)
    assert resolve_form(model) == "gauss-newton"
    gn = hessian_diagonal(model, (x, y), loss=loss, batch_size=10)  # auto → gauss-newton
    names, shapes, H = exact_hessian(model, x, y, loss)
    exact = torch.diagonal(H)
    assert set(gn) == set(names)
    assert rel_err(flat(gn, names), exact) < 1e-6
    assert all((v >= 0).all() for v in gn.values())
    assert model.training is False


def test_gauss_newton_drops_curvature_terms_of_smooth_nets():
    """With tanh the outputs are not linear in each weight: GN ≠ H, but GN = diag(Σ JᵀHJ)."""
    model = _skipnet(nn.Tanh)
    x, y = _data(16, (1, 6, 6), 4)
    gn = hessian_diagonal(model, (x, y), form="gauss-newton")
    names, shapes, H = exact_hessian(model, x, y)
    assert rel_err(flat(gn, names), torch.diagonal(H)) > 1e-3
    assert rel_err(flat(gn, names), explicit_gauss_newton(model, x, 4)) < 1e-6


def test_gauss_newton_on_attention_matches_explicit_jacobian():
    torch.manual_seed(2)
    model = TinyAttention().double().eval()
    x = torch.randn(6, 5, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    gn = hessian_diagonal(model, (x, y), form="gauss-newton", batch_size=4)
    assert "attn.in_proj_weight" in gn and gn["attn.in_proj_weight"].shape == (24, 8)
    names = list(dict(model.named_parameters()))
    assert rel_err(flat(gn, names), explicit_gauss_newton(model, x, 3)) < 1e-6


def test_hutchinson_converges_to_the_exact_diagonal():
    """Rademacher z: z_i (Hz)_i = H_ii + Σ_{j≠i} H_ij z_i z_j, the z_i z_j uncorrelated with
    variance 1, so the k-probe mean has standard deviation σ_i = √(Σ_{j≠i} H_ij² / k).
    With k = 1500 the CLT holds well; every entry must lie within 5 σ_i (P ≈ 200 entries:
    a Gaussian exceeds 5σ with probability 6e-7 each), and the mean squared standardised
    error must be near 1 (χ²_P / P has standard deviation √(2/P) ≈ 0.1), which shows the
    estimator has the variance the formula predicts, neither biased nor a lucky bound.
    Uses tanh, where the exact diagonal differs from Gauss–Newton."""
    model = _skipnet(nn.Tanh)
    x, y = _data(16, (1, 6, 6), 4)
    k = 1500
    hu = hessian_diagonal(model, (x, y), form="hutchinson", probes=k, seed=3, batch_size=16)
    names, shapes, H = exact_hessian(model, x, y)
    exact = torch.diagonal(H)
    sigma = ((H * H).sum(1) - exact * exact).clamp_min(0).div(k).sqrt()
    err = flat(hu, names) - exact
    live = sigma > 1e-12
    assert (err[~live].abs() < 1e-10).all()  # no cross terms: the estimate is exact
    assert (err.abs() <= 5 * sigma + 1e-12).all()
    z2 = float((err[live] / sigma[live]).pow(2).mean())
    assert 0.5 < z2 < 1.6, z2
    gn = hessian_diagonal(model, (x, y), form="gauss-newton")
    # it estimates H, not GN: GN is far outside the error bars somewhere
    assert ((flat(gn, names) - exact).abs() > 10 * sigma + 1e-9).any()


def test_hutchinson_is_seeded_and_chunking_invariant():
    torch.manual_seed(4)
    model = TinyAttention().double().eval()
    x = torch.randn(10, 5, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    a = hessian_diagonal(model, (x, y), form="hutchinson", probes=4, seed=7, batch_size=10)
    b = hessian_diagonal(model, (x, y), form="hutchinson", probes=4, seed=7, batch_size=3)
    c = hessian_diagonal(model, (x, y), form="hutchinson", probes=4, seed=8, batch_size=10)
    assert set(a) == set(dict(model.named_parameters()))
    assert all(torch.allclose(a[k], b[k], rtol=1e-10, atol=1e-14) for k in a)
    assert any(not torch.allclose(a[k], c[k]) for k in a)


def test_auto_keeps_the_recursion_for_chains_and_graph_forms_agree_there():
    torch.manual_seed(5)
    model = LeNet300(in_features=16, hidden=(8,), num_classes=3).double()
    x, y = _data(20, (1, 4, 4), 3)
    assert resolve_form(model) == "lm"
    auto = hessian_diagonal(model, (x, y))
    lm = hessian_diagonal(model, (x, y), form="lm")
    assert all(torch.equal(auto[k], lm[k]) for k in lm)
    # a ReLU chain under CE: Gauss–Newton is the exact diagonal; LM drops off-diagonals
    gn = hessian_diagonal(model, (x, y), form="gauss-newton")
    names, shapes, H = exact_hessian(model, x, y)
    assert rel_err(flat(gn, names), torch.diagonal(H)) < 1e-6
    assert rel_err(gn["fc2.weight"], lm["fc2.weight"]) < 1e-9  # exact on the last layer
    assert rel_err(gn["fc1.weight"], lm["fc1.weight"]) > 1e-6


def test_masked_weights_use_the_effective_tensor():
    model = _skipnet()
    x, y = _data(12, (1, 6, 6), 4)
    mask = torch.rand(model.conv2.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    apply_mask(model.conv2, mask)
    assert "conv2.weight" in effective_tensors(model)
    gn = hessian_diagonal(model, (x, y))
    plain = _skipnet()
    with torch.no_grad():
        plain.conv2.weight.mul_(mask)
    ref = hessian_diagonal(plain, (x, y))
    assert set(gn) == set(ref)
    assert all(rel_err(gn[k], ref[k]) < 1e-9 for k in ref)


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_prune_obd_on_reference_graph_models(name):
    model = model_for_dataset(name, (1, 8, 8), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
    crit = OBD((x, y), batch_size=3)
    prune(model, crit, sparsity=0.5)
    assert crit.form_ == "gauss-newton"
    masks = [m for m in model.modules() if hasattr(m, "mask") and isinstance(m.mask, torch.Tensor)]
    kept = sum(int(m.mask.sum()) for m in masks)
    total = sum(m.mask.numel() for m in masks)
    assert masks and abs(kept / total - 0.5) < 0.01
    assert torch.isfinite(model(x)).all()
    prune(model, "obd", sparsity=0.6, data=(x, y), form="hutchinson", probes=2)


def test_bad_options():
    model = _skipnet()
    x, y = _data(4, (1, 6, 6), 4)
    with pytest.raises(SparsenetError, match="probes"):
        hessian_diagonal(model, (x, y), form="hutchinson", probes=0)
    with pytest.raises(SparsenetError, match="form"):
        resolve_form(model, "newton")
    with pytest.raises(SparsenetError, match="no Linear or Conv2d"):  # not a chain
        hessian_diagonal(model, (x, y), form="lm")
