import numpy as np
import pytest
import torch

from sparsenet.sparse_coding.patches import (
    ZCAWhitener,
    extract_patches,
    normalize_patches,
    patch_grid,
)


def test_patch_grid_counts_positions():
    assert patch_grid(28, 28, 5, 1) == (24, 24)
    assert patch_grid(28, 28, 5, 2) == (12, 12)
    assert patch_grid(8, 6, 3, 2) == (3, 2)


def test_extract_patches_shape_and_content():
    x = torch.arange(2 * 3 * 6 * 7, dtype=torch.float32).reshape(2, 3, 6, 7)
    p = extract_patches(x, size=3, stride=2)
    assert p.shape == (2, 2, 3, 3 * 3 * 3)
    # patch at grid (1, 2) of image 1 is x[1, :, 2:5, 4:7], flattened channel-major
    assert torch.equal(p[1, 1, 2], x[1, :, 2:5, 4:7].reshape(-1))
    # a 3-D (N, H, W) batch is one channel
    q = extract_patches(x[:, 0], size=3, stride=2)
    assert torch.equal(q, extract_patches(x[:, :1], size=3, stride=2))


def test_normalize_patches_zero_mean_unit_variance():
    p = torch.randn(50, 4, 4, 25) * 3 + 7
    q = normalize_patches(p, eps=1e-8)
    assert torch.allclose(q.mean(-1), torch.zeros(50, 4, 4), atol=1e-4)
    assert torch.allclose(q.pow(2).mean(-1), torch.ones(50, 4, 4), atol=1e-3)
    # a flat patch stays exactly zero instead of blowing up
    assert torch.equal(normalize_patches(torch.full((1, 9), 5.0), eps=0.01), torch.zeros(1, 9))


def test_normalize_without_centering_scales_by_rms():
    p = torch.tensor([[3.0, 4.0]])
    q = normalize_patches(p, eps=1e-12, center=False)
    assert torch.allclose(q, p / np.sqrt(12.5))


def test_zca_whitens_to_identity_covariance():
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=gen)
    x = torch.randn(20000, 6, generator=gen) @ mix + 2.0
    z = ZCAWhitener(eps=1e-6).fit_transform(x)
    cov = torch.cov(z.T)
    assert torch.allclose(cov, torch.eye(6), atol=2e-2)
    w = ZCAWhitener(eps=1e-6).fit(x).whitening_
    assert torch.allclose(w, w.T, atol=1e-5)  # ZCA (not PCA) whitening is symmetric


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: extract_patches(torch.rand(4, 28), 3), "images"),
        (lambda: extract_patches(torch.full((1, 1, 8, 8), float("nan")), 3), "images"),
        (lambda: extract_patches(torch.rand(1, 1, 8, 8), 9), "size"),
        (lambda: extract_patches(torch.rand(1, 1, 8, 8), 3, stride=0), "stride"),
        (lambda: normalize_patches(torch.rand(3, 4), eps=0.0), "eps"),
        (lambda: ZCAWhitener(eps=-1.0).fit(torch.rand(10, 3)), "eps"),
        (lambda: ZCAWhitener().fit(torch.rand(10, 3, 2)), "patches"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
