import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp_gram

from sparsenet.sparse_coding import sparse_encode


@pytest.mark.parametrize("k", [1, 3, 10])
def test_fixed_sparsity_matches_sklearn(digit_problem, k):
    X, D = digit_problem
    ours = sparse_encode(X, D, 1e-12, "omp", n_nonzero_coefs=k)
    ref = orthogonal_mp_gram(D @ D.T, D @ X.T, n_nonzero_coefs=k).T
    assert np.all((ours != 0).sum(1) <= k)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_residual_tolerance_matches_sklearn(digit_problem):
    X, D = digit_problem
    tol = 0.05
    ours = sparse_encode(X, D, tol, "omp")
    ref = orthogonal_mp_gram(D @ D.T, D @ X.T, tol=tol, norms_squared=(X**2).sum(1)).T
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    residual = ((X - ours @ D) ** 2).sum(1)
    assert np.all(residual <= tol + 1e-12)


def test_dependent_atoms_stop_cleanly():
    # the third atom is the sum of the first two: OMP must not select a singular support
    D = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]]) / np.array([[1.0], [1.0], [2**0.5]])
    X = np.array([[1.0, 1.0, 0.0], [3.0, -1.0, 0.0]])
    codes = sparse_encode(X, D, 1e-12, "omp", n_nonzero_coefs=3)
    assert np.all(np.isfinite(codes))
    np.testing.assert_allclose(codes @ D, X, atol=1e-12)


def test_float32_torch(digit_problem):
    X, D = digit_problem
    codes = sparse_encode(torch.from_numpy(X).float(), torch.from_numpy(D), 1e-6, "omp",
                          n_nonzero_coefs=5)
    assert codes.dtype == torch.float32
    ref = sparse_encode(X, D, 1e-6, "omp", n_nonzero_coefs=5)
    np.testing.assert_allclose(codes.double().numpy(), ref, atol=1e-4)


def test_omp_rejects_lasso_only_options(digit_problem):
    X, D = digit_problem
    with pytest.raises(ValueError, match="positive"):
        sparse_encode(X, D, 0.1, "omp", positive=True)
    with pytest.raises(ValueError, match="n_nonzero_coefs"):
        sparse_encode(X, D, 0.1, "omp", n_nonzero_coefs=0)
    with pytest.raises(ValueError, match="n_nonzero_coefs"):
        sparse_encode(X, D, 0.1, "cd", n_nonzero_coefs=3)
