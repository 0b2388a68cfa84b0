"""DeepSC's accuracy levers (issue 18): overlapping pyramid cells and feature normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsenet.sparse_coding.deepsc import DeepSC
from sparsenet.sparse_coding.pooling import (
    normalize_features,
    pyramid_cells,
    pyramid_max_pool,
    pyramid_size,
    split_polarity,
)

TINY = dict(
    n_components=(8, 12), patch_size=(3, 2), patch_stride=(1, 1), alpha=0.3, pool_size=2,
    pool_stride=2, drlim_components=6, drlim_iter=10, dict_images=100, dict_patches=1500,
)


def test_overlapping_cells_half_overlap_and_cover_the_grid():
    cells = pyramid_cells(10, 10, (), (1, 2, 4))
    assert cells.shape == (pyramid_size((), (1, 2, 4)), 4) == (21, 4)
    assert cells[0].tolist() == [0, 10, 0, 10]  # overlapping level 1: the whole grid
    # level 2: two bins of 2/3 of the side, a third apart: [0, 7), [3, 10)
    assert cells[1].tolist() == [0, 7, 0, 7] and cells[4].tolist() == [3, 10, 3, 10]
    # level 4 on 10: bins [0, 4), [2, 6), [4, 8), [6, 10)
    assert [c[2:].tolist() for c in cells[5:9]] == [[0, 4], [2, 6], [4, 8], [6, 10]]
    for r0, r1, c0, c1 in cells.tolist():
        assert 0 <= r0 < r1 <= 10 and 0 <= c0 < c1 <= 10


def test_overlap_needs_a_grid_one_larger_than_the_level():
    pyramid_cells(5, 5, (), (4,))
    with pytest.raises(ValueError, match="overlapping level 4"):
        pyramid_cells(4, 4, (), (4,))


def test_pyramid_with_overlap_is_the_max_over_each_cell():
    x = torch.randn(3, 9, 11, 4, generator=torch.Generator().manual_seed(0))
    f = pyramid_max_pool(x, (1, 2), (2, 3))
    assert f.shape == (3, 4 * pyramid_size((1, 2), (2, 3)))
    assert torch.equal(f[:, : 4 * 5], pyramid_max_pool(x, (1, 2)))  # plain levels first
    for n, (r0, r1, c0, c1) in enumerate(pyramid_cells(9, 11, (1, 2), (2, 3)).tolist()):
        assert torch.equal(f[:, 4 * n : 4 * n + 4], x[:, r0:r1, c0:c1].amax(dim=(1, 2)))


@pytest.mark.parametrize("mode", [None, "sqrt", "l2", "sqrt+l2"])
def test_normalize_features_exact_reference(mode):
    x = torch.tensor([[4.0, -9.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0]])
    got = normalize_features(x, mode)
    want = x.double().numpy()
    if mode in ("sqrt", "sqrt+l2"):
        want = np.sign(want) * np.sqrt(np.abs(want))
    if mode in ("l2", "sqrt+l2"):
        norm = np.linalg.norm(want, axis=1, keepdims=True)
        want = want / np.maximum(norm, 1e-12)  # the zero row stays zero
    assert got.dtype == torch.float32 and got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=0)
    if mode == "sqrt":
        assert got.tolist()[0] == [2.0, -3.0, 0.0, 1.0]


def test_normalize_features_rejects_unknown_mode():
    with pytest.raises(ValueError, match="feature_norm"):
        normalize_features(torch.ones(2, 3), "max")
    with pytest.raises(ValueError, match="feature_norm"):
        DeepSC(feature_norm="l1").fit_features(torch.rand(4, 8, 8))


@pytest.fixture(scope="module")
def lever_models(digits_data):
    x = digits_data.x_train[:150]
    plain = DeepSC(**TINY).fit_features(x)
    levers = DeepSC(**TINY, pyramid=(1, 2), pyramid_overlap=(2, 3),
                    feature_norm="sqrt+l2").fit_features(x)
    return plain, levers


def test_kernel_overlap_features_equal_the_torch_pooling(lever_models, digits_data):
    """The kernel's overlapping cells are those of pyramid_max_pool on the torch codes."""
    _, m = lever_models
    maps = m._images(digits_data.x_test[:20].numpy())
    layer = m.layers_[0]
    codes = split_polarity(layer.codes(maps, m.encode_iter))  # (N, 6, 6, 16)
    want = pyramid_max_pool(codes, (1, 2), (2, 3))
    got, _ = layer.encode_pool(maps, max_iter=m.encode_iter, levels=(1, 2), overlap=(2, 3))
    scale = float(want.abs().max())
    np.testing.assert_allclose(got, want, atol=2e-5 * scale, rtol=0)


def test_feature_shapes_and_blocks(lever_models, digits_data):
    plain, m = lever_models
    x = digits_data.x_test[:10]
    f0, f = plain.transform(x), m.transform(x)
    # layer 1: 6×6 grid, cells 1 + 4 (plain) + 4 + 9 (overlap); layer 2: 2×2 grid, the
    # overlapping levels need 3×3, so only 1 + 4 cells
    assert m.layer_features_ == [16 * 18, 24 * 5]
    assert f.shape == (10, sum(m.layer_features_)) and f.dtype == np.float32
    assert f0.shape == (10, 16 * 21 + 24 * 5)  # default pyramid (1, 2, 4), no overlap
    blocks = np.split(f, np.cumsum(m.layer_features_)[:-1], axis=1)
    for b in blocks:  # sqrt+l2: every layer block of every image has unit norm
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    # the normalisation is applied to the layer's pooled features
    want = normalize_features(torch.from_numpy(_layer1_pooled(m, x)), "sqrt+l2").numpy()
    np.testing.assert_allclose(blocks[0], want, rtol=1e-5, atol=1e-7)


def _layer1_pooled(m: DeepSC, x: torch.Tensor) -> np.ndarray:
    """Layer 1's unnormalised pooled features of ``m`` (its pyramid and overlap)."""
    feats, _ = m._encode_pool(m.layers_[0], m._images(x.numpy()), (1, 2), False, (2, 3))
    assert feats is not None
    return feats.numpy()


def test_round_trip_with_levers_in_a_fresh_process(tmp_path, digits_data, loads_the_same):
    x, y = digits_data.x_train[:200], digits_data.y_train[:200].numpy()
    # with DrLIM (the default): its column-major projection must come back column-major,
    # or the reloaded matmul rounds differently (~1e-6)
    m = DeepSC(**TINY, pyramid=(1, 2), pyramid_overlap=(3,), feature_norm="sqrt").fit(x, y)
    assert m.layers_[0].reducer is not None
    check = "assert m.feature_norm == 'sqrt' and tuple(m.pyramid_overlap) == (3,)"
    assert loads_the_same(m, digits_data.x_test[:30].numpy(), tmp_path, check)


def test_cli_passes_the_lever_flags(tmp_path, capsys):
    import json

    from sparsenet.cli import main

    argv = "deepsc --data digits --layers 1 --atoms 12 --patch 3 --stride 1 --pool 2"
    argv += " --dict-images 200 --pyramid 1,2 --overlap 3 --feature-norm sqrt+l2"
    rc = main(argv.split() + ["--out", str(tmp_path / "run"), "--json", "--quiet"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["test_accuracy"] > 0.5
    assert res["params"]["pyramid"] == [1, 2] and res["params"]["pyramid_overlap"] == [3]
    assert res["params"]["feature_norm"] == "sqrt+l2"
    assert res["n_features"] == 24 * (1 + 4 + 9)  # polarity 2 × 12 atoms, 14 cells


def test_per_layer_pyramid(lever_models, digits_data):
    """``pyramid`` may give each layer its own levels (same dictionaries: same seed)."""
    plain, _ = lever_models
    m = DeepSC(**TINY, pyramid=((1, 2, 3), (1,))).fit_features(digits_data.x_train[:150])
    x = digits_data.x_test[:8]
    f = m.transform(x)
    assert m.layer_features_ == [16 * 14, 24 * 1]
    # layer 2's whole-grid max is the first cell of the default pyramid's layer-2 block
    f0 = plain.transform(x)
    np.testing.assert_array_equal(f[:, 16 * 14 :], f0[:, 16 * 21 : 16 * 21 + 24])
    with pytest.raises(ValueError, match="pyramid"):
        DeepSC(**TINY, pyramid=((1, 2),)).fit_features(digits_data.x_train[:150])


def test_cli_pyramid_per_layer_syntax():
    from sparsenet.cli.deepsc import _levels_arg

    assert _levels_arg("1,2,4") == (1, 2, 4)
    assert _levels_arg("1,2,4,8/1,2") == ((1, 2, 4, 8), (1, 2))


def test_fit_in_place_matches_pipeline_fit():
    from sparsenet.sparse_coding.linear import fit_in_place, make_classifier

    rng = np.random.default_rng(0)
    x = (rng.random((300, 20)) * rng.random(20) * 5).astype(np.float32)
    y = rng.integers(0, 3, 300)
    want = make_classifier("logreg", 0.1).fit(x, y)
    x2 = x.copy()
    got = fit_in_place(make_classifier("logreg", 0.1), x2, y, rows=64)  # 5 chunks
    scaler = got.steps[0][1]
    np.testing.assert_allclose(scaler.mean_, want.steps[0][1].mean_, rtol=1e-6)
    np.testing.assert_allclose(scaler.scale_, want.steps[0][1].scale_, rtol=1e-6)
    np.testing.assert_allclose(x2, (x - scaler.mean_) / scaler.scale_, atol=1e-5)  # in place
    assert x2.dtype == np.float32 and scaler.copy
    np.testing.assert_allclose(got.decision_function(x), want.decision_function(x), atol=1e-3)
    x3 = x.copy()
    got.predict(x3)
    assert np.array_equal(x3, x)  # later calls do not touch the caller's array
