import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode as sk_sparse_encode

from sparsenet.sparse_coding import InvalidInputError, duality_gap, lasso_objective, sparse_encode

ALPHA = 0.1


def _sklearn_codes(X, D, alpha, positive=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk_sparse_encode(
            X, D, alpha=alpha, algorithm="lasso_cd", max_iter=20_000, positive=positive
        )


@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("method", ["fista", "cd"])
def test_same_objective_as_sklearn_lasso_cd(digit_problem, method, positive):
    X, D = digit_problem
    ref = lasso_objective(X, D, _sklearn_codes(X, D, ALPHA, positive), ALPHA)
    codes = sparse_encode(X, D, ALPHA, method, tol=1e-10, positive=positive)
    ours = lasso_objective(X, D, codes, ALPHA)
    # per sample: never worse than sklearn by more than 1e-6 relative; in total, equal
    assert np.all(ours <= ref * (1 + 1e-6))
    assert abs(ours.sum() - ref.sum()) <= 1e-6 * ref.sum()
    if positive:
        assert codes.min() >= 0
    else:
        assert codes.min() < 0  # the constraint is really off


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["fista", "cd"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_duality_gap_at_exit_below_tol(digit_problem, method, dtype, tol):
    X, D = (a.astype(dtype) for a in digit_problem)
    if dtype == np.float32 and tol < 1e-5:
        tol = 1e-5  # float32 rounding floors the attainable gap near 1e-7·||x||²
    codes = sparse_encode(X, D, ALPHA, method, tol=tol)
    assert codes.dtype == dtype
    gap = duality_gap(X.astype(np.float64), D.astype(np.float64), codes, ALPHA)
    xsq = (X.astype(np.float64) ** 2).sum(1)
    assert np.all(gap <= tol * xsq * 1.01 + 1e-12)


def test_gap_bounds_suboptimality(digit_problem):
    X, D = digit_problem
    rough = sparse_encode(X, D, ALPHA, "fista", max_iter=2, tol=0.0)
    exact = sparse_encode(X, D, ALPHA, "cd", tol=1e-12)
    sub = lasso_objective(X, D, rough, ALPHA) - lasso_objective(X, D, exact, ALPHA)
    gap = duality_gap(X, D, rough, ALPHA)
    assert np.all(sub <= gap + 1e-12)
    assert np.all(duality_gap(X, D, exact, ALPHA) <= 1e-12 * (X**2).sum(1) + 1e-15)


def test_methods_agree_and_float32_close(digit_problem):
    X, D = digit_problem
    a = sparse_encode(X, D, ALPHA, "fista", tol=1e-12)
    b = sparse_encode(X, D, ALPHA, "cd", tol=1e-12)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = sparse_encode(X.astype(np.float32), D.astype(np.float32), ALPHA, "cd", tol=1e-6)
    o64, o32 = lasso_objective(X, D, b, ALPHA), lasso_objective(X, D, c.astype(np.float64), ALPHA)
    assert np.all(o32 <= o64 * (1 + 1e-4))


def test_warm_start_at_optimum_stops_at_once(digit_problem):
    X, D = digit_problem
    opt = sparse_encode(X, D, ALPHA, "cd", tol=1e-12)
    for method in ("cd", "fista"):
        again = sparse_encode(X, D, ALPHA, method, init=opt, max_iter=1, tol=1e-10)
        np.testing.assert_array_equal(again, opt)
    cold = sparse_encode(X, D, ALPHA, "fista", max_iter=1, tol=1e-10)
    assert not np.array_equal(cold, opt)  # one iteration from zero is not enough


def test_torch_in_torch_out_and_zero_rows(digit_problem):
    X, D = digit_problem
    X = X.copy()
    X[:5] = 0
    xt = torch.from_numpy(X).float()
    codes = sparse_encode(xt, torch.from_numpy(D), ALPHA, "cd")
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.float32
    assert codes.shape == (len(X), len(D))
    assert torch.all(codes[:5] == 0)
    np_codes = sparse_encode(X, D, ALPHA, "cd")
    assert isinstance(np_codes, np.ndarray)
    np.testing.assert_allclose(codes.double().numpy(), np_codes, atol=1e-3)


def test_large_alpha_gives_zero_codes(digit_problem):
    X, D = digit_problem
    alpha_max = np.abs(X @ D.T).max()
    for method in ("cd", "fista"):
        assert np.all(sparse_encode(X, D, alpha_max * 1.001, method) == 0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(X=np.array([[np.nan, 0.0]]), D=np.eye(2), alpha=1.0), "X"),
        (dict(X=np.array([[np.inf, 0.0]]), D=np.eye(2), alpha=1.0), "X"),
        (dict(X=np.ones(3), D=np.eye(3), alpha=1.0), "X"),
        (dict(X=np.ones((2, 3, 1)), D=np.eye(3), alpha=1.0), "X"),
        (dict(X=np.ones((2, 3)), D=np.eye(4), alpha=1.0), "D"),
        (dict(X=np.ones((2, 3)), D=np.full((3, 3), np.nan), alpha=1.0), "D"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=0.0), "alpha"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=-1.0), "alpha"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=float("nan")), "alpha"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=1.0, method="lars"), "method"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=1.0, init=np.zeros((2, 2))), "init"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=1.0, max_iter=0), "max_iter"),
        (dict(X=np.ones((2, 3)), D=np.eye(3), alpha=1.0, tol=-1.0), "tol"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} ") as info:
        sparse_encode(**kwargs)
    assert isinstance(info.value, InvalidInputError)
