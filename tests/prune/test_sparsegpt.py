"""OBS against Hassibi's closed form and brute force; SparseGPT against magnitude."""

import copy

import pytest
import torch
from torch import nn

from sparsenet.errors import SparsenetError
from sparsenet.prune import OBS, SparseGPT, get_mask, obs_matrix, prune, sparsegpt_matrix


def least_squares_layer(seed, rows=3, cols=6, n=40):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g, dtype=torch.float64)
    x = torch.randn(n, cols, generator=g, dtype=torch.float64) @ mix  # correlated inputs
    layer = nn.Linear(cols, rows, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(rows, cols, generator=g, dtype=torch.float64))
    return layer, x


def brute_force(w, x):
    """ΔE and the re-fitted row for every (row, q): least squares without column q."""
    out = {}
    target = x @ w.T  # (n, rows)
    for i in range(w.shape[0]):
        for q in range(w.shape[1]):
            others = [j for j in range(w.shape[1]) if j != q]
            sol = torch.linalg.lstsq(x[:, others], target[:, i:i + 1]).solution[:, 0]
            row = torch.zeros_like(w[i])
            row[others] = sol
            out[(i, q)] = (float(((x @ (w[i] - row)) ** 2).sum()), row)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_obs_one_weight_equals_hassibis_closed_form(seed):
    layer, x = least_squares_layer(seed)
    model = nn.Sequential()
    model.add_module("fc", layer)
    w = layer.weight.detach().clone()
    crit = OBS(x, calibration=len(x), damp=0.0)
    prune(model, crit, per_layer={"fc": 1 / w.numel()})
    ((i, q, de),) = crit.removed_["fc.weight"]
    # the chosen weight and its ΔE: the least increase of ||W X - Ŵ X||² over all candidates
    bf = brute_force(w, x)
    best = min(bf, key=lambda k: bf[k][0])
    assert (i, q) == best
    assert de == pytest.approx(bf[best][0], rel=1e-8)
    hinv = torch.linalg.inv(x.T @ x)
    assert de == pytest.approx(float(w[i, q] ** 2 / hinv[q, q]), rel=1e-10)
    # the update δw = −(w_q / [H⁻¹]_qq) H⁻¹ e_q on that row, nothing else changes
    expected = w.clone()
    expected[i] -= (w[i, q] / hinv[q, q]) * hinv[:, q]
    new = layer.weight.detach()
    assert torch.allclose(new, expected, atol=1e-10)
    assert new[i, q] == 0 and torch.allclose(new[i], bf[best][1], atol=1e-8)
    assert int((~get_mask(layer)).sum()) == 1 and not get_mask(layer)[i, q]


def test_obs_greedy_steps_match_brute_force_each_time():
    layer, x = least_squares_layer(7, rows=2, cols=5)
    w, keep = layer.weight.detach().clone(), None
    for _ in range(3):
        new, keep_new, ((i, q, de),) = obs_matrix(w, x.T @ x, int((~keep).sum()) + 1 if keep is not None else 1,
                                                  keep=keep)
        # brute force over the live weights, each row refitted on its live columns
        cand = {}
        for r in range(2):
            live = [j for j in range(5) if keep is None or keep[r, j]]
            for qq in live:
                others = [j for j in live if j != qq]
                t = x @ w[r]
                sol = torch.linalg.lstsq(x[:, others], t[:, None]).solution[:, 0]
                cand[(r, qq)] = float(((t - x[:, others] @ sol) ** 2).sum())
        assert (i, q) == min(cand, key=cand.get) and de == pytest.approx(cand[(i, q)], rel=1e-7)
        w, keep = new, keep_new


def recon_error(w, w_hat, x):
    return float(((x @ (w - w_hat).T) ** 2).sum().sqrt())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_sparsegpt_reconstructs_better_than_magnitude(seed, sparsity):
    g = torch.Generator().manual_seed(seed)
    rows, cols, n = 24, 80, 400
    x = torch.randn(n, cols, generator=g, dtype=torch.float64) @ torch.randn(cols, cols, generator=g,
                                                                         dtype=torch.float64)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    k = round(sparsity * w.numel())
    keep_mag = torch.ones(w.numel(), dtype=torch.bool)
    keep_mag[torch.topk(w.abs().flatten(), k, largest=False).indices] = False
    w_mag = w * keep_mag.reshape(w.shape)
    w_sg, keep_sg = sparsegpt_matrix(w, x.T @ x, k, blocksize=32, damp=0.01)
    assert int((~keep_sg).sum()) == k and bool((w_sg[~keep_sg] == 0).all())
    assert recon_error(w, w_sg, x) < recon_error(w, w_mag, x)
    # and exact OBS is at least as good again on such a layer, at the same count
    w_obs, keep_obs, _ = obs_matrix(w, x.T @ x, k, damp=0.0)
    assert int((~keep_obs).sum()) == k
    assert recon_error(w, w_obs, x) <= recon_error(w, w_sg, x) * 1.05


def test_sparsegpt_on_a_linear_model_lowers_the_output_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(512, 20) @ torch.randn(20, 20)
    ref = model(x).detach()
    mag, sg = copy.deepcopy(model), copy.deepcopy(model)
    prune(mag, "magnitude", sparsity=0.6, scope="layer")
    prune(sg, SparseGPT(x, calibration=512, blocksize=8), sparsity=0.6, scope="layer")
    with torch.no_grad():
        assert float((sg(x) - ref).norm()) < float((mag(x) - ref).norm())
    for m in (sg[0], sg[2]):
        assert int((~get_mask(m)).sum()) == round(0.6 * m.weight.numel())
        assert bool((m.parametrizations.weight.original[~get_mask(m)] == 0).all())


def test_reprune_keeps_old_zeros_and_settings_are_checked():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 8))
    x = torch.randn(64, 12)
    prune(model, "magnitude", sparsity=0.3)
    old = get_mask(model[0]).clone()
    prune(model, "sparsegpt", sparsity=0.6, data=(x, None), calibration=64)
    new = get_mask(model[0])
    assert not (new & ~old).any() and int((~new).sum()) == round(0.6 * 96)
    for bad in ({"blocksize": 0}, {"damp": -1.0}, {"calibration": 0}):
        with pytest.raises(SparsenetError):
            SparseGPT(x, **bad)
    with pytest.raises(SparsenetError, match="calibration data"):
        prune(nn.Sequential(nn.Linear(3, 2)), "sparsegpt", sparsity=0.5)
    with pytest.raises(SparsenetError, match="use sparsegpt"):
        obs_matrix(torch.zeros(100, 300), torch.eye(300), 10, max_elements=1000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the code never does)")
@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "obs"])
def test_the_same_code_runs_on_cuda(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.rand(64, 1, 8, 8)
    cpu, gpu = copy.deepcopy(model), copy.deepcopy(model).cuda()
    prune(cpu, method, sparsity=0.5, data=x, pattern="2:4" if method == "wanda" else None)
    prune(gpu, method, sparsity=0.5, data=x.cuda(), pattern="2:4" if method == "wanda" else None)
    for a, b in zip(prunable_targets_of(cpu), prunable_targets_of(gpu), strict=True):
        assert get_mask(b.module).is_cuda and b.value.is_cuda
        agree = (get_mask(a.module) == get_mask(b.module).cpu()).float().mean()
        assert agree > 0.97  # float32 on the GPU, float64 on the CPU: near ties may differ
    with torch.no_grad():
        assert torch.allclose(cpu(x), gpu(x.cuda()).cpu(), atol=0.05, rtol=0.05)


def prunable_targets_of(model):
    from sparsenet.prune import prunable_targets

    return prunable_targets(model)
