"""The fused DeepSC layer kernel against the torch path it replaced, and the exact lasso."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode as sk_sparse_encode

from sparsenet.sparse_coding import lasso_objective, sparse_encode
from sparsenet.sparse_coding import layer_kernel as lk
from sparsenet.sparse_coding.deepsc import DeepSC
from sparsenet.sparse_coding.eig_small import LANES, gather_lanes, lmax, lmax_gathered
from sparsenet.sparse_coding.patches import normalize_patches
from sparsenet.sparse_coding.pooling import local_max_pool, pyramid_max_pool, split_polarity

TINY = dict(
    n_components=(16, 24), patch_size=(3, 2), patch_stride=(1, 1), alpha=0.3, pool_size=2,
    pool_stride=2, drlim_components=8, drlim_iter=30, dict_images=200, dict_patches=2000,
    classifier="logreg",
)


@pytest.fixture(scope="module")
def model(digits_data):
    return DeepSC(**TINY).fit_features(digits_data.x_train[:300])


def _reference(layer, maps, iters, polarity, levels, pool):
    codes = layer.codes(maps, iters)  # the torch encoder: (N, gh, gw, K)
    codes = split_polarity(codes) if polarity else codes
    pooled = None if pool is None else local_max_pool(codes, *pool)
    return pyramid_max_pool(codes, levels), pooled


@pytest.mark.parametrize("iters", [1, 5, 10])
@pytest.mark.parametrize("polarity", [True, False])
def test_fista_kernel_equals_the_torch_encoder(model, digits_data, iters, polarity):
    """Both layers, whitened: pyramid features and local pooling as the torch path gives
    them, to float32 rounding (the codes are the same FISTA iterates)."""
    maps = model._images(digits_data.x_test[:40].numpy())
    for i, layer in enumerate(model.layers_):
        pool = (2, 2) if i == 0 else None
        want_f, want_p = _reference(layer, maps, iters, polarity, (1, 2), pool)
        got_f, got_p = layer.encode_pool(
            maps, method="fista", max_iter=iters, polarity=polarity, levels=(1, 2), pool=pool
        )
        scale = float(want_f.abs().max())
        assert scale > 0.1
        np.testing.assert_allclose(got_f, want_f, atol=2e-5 * scale, rtol=0)
        if pool is not None:
            np.testing.assert_allclose(got_p, want_p, atol=2e-5 * scale, rtol=0)
            maps = model.layer_step(0, maps)[1]  # the model's own input of layer 2


def test_fista_kernel_with_more_rounds_stays_close(model, digits_data):
    """encode_iter > 10: the torch solver charged each sample its batch's largest block
    budget, the kernel charges its own, so only most codes agree; all stay close."""
    layer = model.layers_[0]
    maps = model._images(digits_data.x_test[:20].numpy())
    want, _ = _reference(layer, maps, 30, True, (1,), None)
    got, _ = layer.encode_pool(maps, method="fista", max_iter=30, levels=(1,))
    assert np.abs(got.numpy() - want.numpy()).max() < 0.05 * float(want.abs().max())


def _one_patch_codes(x, D, alpha, **kw):
    """Each row of x (n, P) as a 1×1 image with P channels: the kernel's features are then
    split_polarity of that row's code, so code = positive part − negative part."""
    feats, _ = lk.layer_kernel(
        x[:, None, None, :].astype(np.float32), size=1, stride=1, eps=1e-2, atoms=D,
        alpha=alpha, levels=(1,), polarity=True, **kw,
    )
    k = D.shape[0]
    return feats[:, :k] - feats[:, k:]


def test_cd_kernel_solves_the_lasso_like_sklearn(digit_problem):
    X, D = digit_problem
    X, D = X[:60], D[:40]
    alpha = 0.05
    got = _one_patch_codes(X, D, alpha, solver="cd", max_iter=10_000, tol=1e-9)
    xn = normalize_patches(torch.from_numpy(X).float(), 1e-2).double().numpy()  # what it codes
    ref = sk_sparse_encode(xn, D, alpha=alpha, algorithm="lasso_cd", max_iter=20_000)
    obj_got = lasso_objective(xn, D, got.astype(np.float64), alpha)
    obj_ref = lasso_objective(xn, D, ref, alpha)
    assert np.all(obj_got <= obj_ref * (1 + 1e-4) + 1e-7)
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_fista_kernel_equals_sparse_encode_per_patch(digit_problem):
    X, D = digit_problem
    X, D = X[:80], D[:50]
    got = _one_patch_codes(X, D, 0.05, solver="fista", max_iter=5)
    xn = normalize_patches(torch.from_numpy(X).float(), 1e-2)
    want = sparse_encode(xn, torch.from_numpy(D).float(), 0.05, "fista", max_iter=5, tol=0.0)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_repeated_and_blank_patches_reuse_exact_codes():
    """Shortcuts (same as the previous patch, constant patch) change nothing: an image with
    blank and repeated regions gives the features the torch path gives."""
    rng = np.random.default_rng(0)
    img = np.zeros((3, 12, 12, 1), dtype=np.float32)
    img[:, 3:7, 2:9, 0] = rng.random((3, 4, 7))
    img[1, :, 9:, 0] = 0.5  # a constant, non-zero block
    D = rng.standard_normal((12, 9)).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    feats, pooled = lk.layer_kernel(img, size=3, stride=1, eps=0.01, atoms=D, alpha=0.2,
                                    levels=(1, 2, 4), pool=(2, 2))
    from sparsenet.sparse_coding.sclayer import SCLayer

    layer = SCLayer(3, 1, 0.01, None, torch.from_numpy(D), 0.2)
    want_f, want_p = _reference(layer, torch.from_numpy(img), 5, True, (1, 2, 4), (2, 2))
    np.testing.assert_allclose(feats, want_f, atol=1e-5)
    np.testing.assert_allclose(pooled, want_p, atol=1e-5)


@pytest.mark.parametrize("m", [1, 2, 3, 8, 16, 24])
def test_lmax_matches_eigvalsh(m):
    rng = np.random.default_rng(m)
    s = lk._scratch(32, np.float32)
    for t in range(50):
        a = rng.standard_normal((m, 30)).astype(np.float32)
        if t % 3 == 0 and m > 1:
            a[: m // 2] = a[m // 2 : 2 * (m // 2)]  # repeated atoms: a singular block
        if t % 5 == 0:
            a[:, :] = 0
            a[:, t % 30] = 1  # rank one, every eigenvector but one orthogonal to it
        g = (a @ a.T).astype(np.float32)
        want = np.linalg.eigvalsh(g.astype(np.float64))[-1]
        got = lmax(g, m, s.tri, s.d, s.e, s.v, s.p)
        assert abs(got - want) <= 1e-7 * max(abs(want), 1.0), (t, got, want)
        padded = np.zeros((32, 32), dtype=np.float32)  # the kernel's zero-padded scratch
        padded[:m, :m] = g
        got = lmax(padded, m, s.tri, s.d, s.e, s.v, s.p)
        assert abs(got - want) <= 1e-7 * max(abs(want), 1.0), (t, got, want)


@pytest.mark.parametrize("m", [1, 2, 8, 16])
@pytest.mark.parametrize("nl", [1, 5, LANES])
def test_lmax_gathered_is_lmax_bit_for_bit(m, nl):
    """Blocks of a Gram matrix side by side: every λ_max exactly :func:`lmax`'s, also for
    singular and rank-one blocks (Lanczos breaks down: the Householder fallback) and for a
    partial group padded with identity lanes."""
    rng = np.random.default_rng(m * 100 + nl)
    k = 40
    atoms = rng.standard_normal((k, 25)).astype(np.float32)
    atoms[10:14] = atoms[0:4]  # repeated atoms: singular blocks
    atoms[20:24] = 0
    atoms[20:24, 3] = 1  # four copies of one direction: a rank-one block
    g = (atoms @ atoms.T).astype(np.float32)
    n_solve = 3 * LANES
    sel = np.zeros((n_solve, 16), dtype=np.int64)
    for t in range(n_solve):
        pool = [0, 1, 2, 3, 10, 11, 12, 13] if t % 4 == 0 else \
            [20, 21, 22, 23] if t % 4 == 1 else range(k)
        sel[t, :m] = rng.choice(np.array(list(pool)), size=m, replace=len(pool) < m)
    slots = rng.permutation(n_solve)[:nl].astype(np.int64)
    got = np.full(n_solve, np.nan)
    lanes = LANES if nl >= 8 else nl
    lmax_gathered(gather_lanes(g, sel, slots, nl, m, lanes), slots, nl, m, lanes, got)
    s = lk._scratch(k, np.float32)
    for sid in slots:
        blk = g[np.ix_(sel[sid, :m], sel[sid, :m])]
        want = lmax(np.ascontiguousarray(blk), m, s.tri, s.d, s.e, s.v, s.p)
        assert got[sid] == want, (sid, got[sid], want)
    others = np.setdiff1d(np.arange(n_solve), slots)
    assert np.isnan(got[others]).all()  # only the lanes' slots are written


def test_pyramid_cells_are_adaptive_pooling_bins():
    for g in (3, 6, 10, 24):
        x = torch.arange(g * g, dtype=torch.float32).reshape(1, g, g, 1)
        want = pyramid_max_pool(x, (1, 2, 3) if g >= 3 else (1,))
        cells = lk.pyramid_cells(g, g, (1, 2, 3))
        got = [x[0, r0:r1, c0:c1, 0].max() for r0, r1, c0, c1 in cells]
        assert torch.equal(torch.stack(got), want[0])
