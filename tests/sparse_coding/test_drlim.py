import pytest
import torch

from sparsenet.sparse_coding.drlim import DrLIM, drlim_loss, sample_pairs


def _hand_made():
    # three pairs of 3-D codes, projected by W (2×3): similar, dissimilar inside the
    # margin, dissimilar outside the margin
    W = torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]], dtype=torch.float64)
    yi = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    yj = torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    lab = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    return W, yi, yj, lab


def test_loss_matches_formula_on_hand_made_pairs():
    W, yi, yj, lab = _hand_made()
    beta = 2.0
    # W(yi - yj): pair 0 → W·(1, 0, -1) = (-1, -1), d² = 2
    #             pair 1 → W·(0, -0.5, 0) = (0, 0.5), d² = 0.25 < β
    #             pair 2 → W·(3, 0, 0) = (3, 0), d² = 9 > β
    want = (0.5 * 2.0 + (2.0 - 0.25) + 0.0) / 3
    got = drlim_loss(yi @ W.T, yj @ W.T, lab, beta)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_gradient_matches_formula():
    W, yi, yj, lab = _hand_made()
    beta = 2.0
    W = W.clone().requires_grad_(True)
    drlim_loss(yi @ W.T, yj @ W.T, lab, beta).backward()
    # d/dW ½||Wδ||² = Wδδᵀ; d/dW max(0, β − ||Wδ||²) = −2Wδδᵀ inside the margin, 0 outside
    want = torch.zeros_like(W)
    for p in range(3):
        delta = (yi[p] - yj[p])[:, None]
        d2 = float((W.detach() @ delta).pow(2).sum())
        if lab[p] == 0:
            want += W.detach() @ delta @ delta.T
        elif d2 < beta:
            want += -2 * W.detach() @ delta @ delta.T
    assert torch.allclose(W.grad, want / 3, atol=1e-12)


def test_sample_pairs_respects_neighbourhoods():
    gen = torch.Generator().manual_seed(0)
    ii, jj, lab = sample_pairs((5, 8, 8), 2000, gen, radius=1, far=4)
    assert ii.shape == jj.shape == (2000, 3) and lab.shape == (2000,)
    sim, dis = lab == 0, lab == 1
    assert int(sim.sum()) == 1000
    cheb = torch.maximum((ii[:, 1] - jj[:, 1]).abs(), (ii[:, 2] - jj[:, 2]).abs())
    assert bool((ii[sim, 0] == jj[sim, 0]).all())
    assert bool(((cheb[sim] >= 1) & (cheb[sim] <= 1)).all())
    same_img = dis & (ii[:, 0] == jj[:, 0])
    assert bool((cheb[same_img] >= 4).all())
    assert int((dis & (ii[:, 0] != jj[:, 0])).sum()) > 0
    for idx in (ii, jj):
        assert int(idx[:, 1].max()) < 8 and int(idx[:, 2].max()) < 8 and int(idx.min()) >= 0


def test_fit_lowers_the_loss_and_separates_pairs():
    # smooth maps: neighbours share most codes; other images differ
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(40, 1, 1, 12, generator=gen)
    maps = base + 0.3 * torch.randn(40, 6, 6, 12, generator=gen)
    pca = DrLIM(n_components=4, n_iter=0, batch_pairs=1024).fit(maps)  # the PCA start, untrained
    model = DrLIM(n_components=4, n_iter=150, batch_pairs=1024, lr=0.02).fit(maps)
    assert model.components_.shape == (4, 12)
    assert model.transform(maps).shape == (40, 6, 6, 4)
    assert model.beta_ == pca.beta_  # same automatic margin from the same start
    assert model.score(maps) < 0.85 * pca.score(maps)
    assert sum(model.loss_curve_[-10:]) < sum(model.loss_curve_[:10])


@pytest.mark.parametrize(
    "kwargs, maps, name",
    [
        (dict(n_components=20), torch.rand(4, 3, 3, 8), "n_components"),
        (dict(n_components=2, beta=0.0), torch.rand(4, 3, 3, 8), "beta"),
        (dict(), torch.rand(4, 3, 8), "maps"),
        (dict(), torch.full((4, 3, 3, 8), float("nan")), "maps"),
    ],
)
def test_bad_input_names_the_argument(kwargs, maps, name):
    with pytest.raises(ValueError, match=name):
        DrLIM(n_iter=2, **kwargs).fit(maps)
