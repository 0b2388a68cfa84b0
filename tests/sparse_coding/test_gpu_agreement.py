"""CPU/GPU agreement of the torch encoders (issue 18): run only where CUDA is available.

The project never needs a GPU; these tests check that the torch paths that do run on CUDA
(``sparse_encode`` with FISTA, batched coordinate descent and OMP, and the dictionary's
Gram-based objective) give what the CPU gives, to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsenet.sparse_coding import sparse_encode

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _problem(seed: int = 0, n: int = 300, dim: int = 25, k: int = 64):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(k, dim, generator=g)
    d /= d.norm(dim=1, keepdim=True)
    x = torch.randn(n, dim, generator=g)
    return x, d


@pytest.mark.parametrize(("method", "kwargs"), [
    ("fista", {"max_iter": 5, "tol": 0.0}),  # DeepSC's encoder
    ("fista", {"max_iter": 200, "tol": 1e-6}),
    ("cd", {"max_iter": 200, "tol": 1e-6, "backend": "torch"}),
    ("omp", {"n_nonzero_coefs": 6}),
])
def test_sparse_encode_cpu_and_cuda_agree(method, kwargs):
    x, d = _problem()
    alpha = 1e-3 if method == "omp" else 0.3
    cpu = sparse_encode(x, d, alpha, method, **kwargs)
    gpu = sparse_encode(x.cuda(), d.cuda(), alpha, method, **kwargs)
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype == torch.float32
    got = gpu.cpu().numpy()
    want = cpu.numpy()
    # same supports (a near-tie may flip one atom of a few samples), values to rounding
    same = (got != 0) == (want != 0)
    assert same.all(axis=1).mean() >= 0.99
    rows = same.all(axis=1)
    np.testing.assert_allclose(got[rows], want[rows], atol=1e-4, rtol=1e-4)


def test_lasso_objective_is_the_same_on_cuda():
    x, d = _problem(seed=1)
    alpha = 0.2
    codes = [sparse_encode(xx, dd, alpha, "cd", max_iter=500, tol=1e-8, backend="torch")
             for xx, dd in ((x, d), (x.cuda(), d.cuda()))]
    obj = [float(0.5 * ((xx.cpu() - c.cpu() @ d) ** 2).sum() + alpha * c.cpu().abs().sum())
           for xx, c in zip((x, x), codes, strict=True)]
    assert obj[1] == pytest.approx(obj[0], rel=1e-5)
