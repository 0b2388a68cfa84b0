"""The numba coordinate-descent kernel behind ``sparse_encode(method="cd")`` on CPU."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode as sk_sparse_encode

from sparsenet.sparse_coding import (
    InvalidInputError,
    duality_gap,
    lasso_cpu,
    lasso_objective,
    sparse_encode,
)

ALPHA = 0.1


def _sklearn_objective(X, D, alpha, positive=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = sk_sparse_encode(X, D, alpha=alpha, algorithm="lasso_cd", max_iter=20_000,
                                 positive=positive)
    return lasso_objective(X, D, codes, alpha)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("positive", [False, True])
def test_cd_backends_match_sklearn_objective(digit_problem, backend, positive):
    X, D = digit_problem
    ref = _sklearn_objective(X, D, ALPHA, positive)
    codes = sparse_encode(X, D, ALPHA, "cd", tol=1e-10, positive=positive, backend=backend)
    ours = lasso_objective(X, D, codes, ALPHA)
    assert np.all(ours <= ref * (1 + 1e-6))
    assert abs(ours.sum() - ref.sum()) <= 1e-6 * ref.sum()
    assert (codes.min() >= 0) if positive else (codes.min() < 0)


@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-8])
def test_kernel_gap_at_exit_below_tol(digit_problem, tol, positive):
    X, D = digit_problem
    xsq = (X**2).sum(1)
    codes, gaps = lasso_cpu.lasso_cd_cpu(D @ D.T, X @ D.T, xsq, ALPHA, np.zeros((len(X), len(D))),
                                         tol=tol, positive=positive)
    assert np.all(gaps <= tol * xsq)
    # the kernel's gap is the public duality gap (to rounding)
    exact = duality_gap(X, D, codes, ALPHA, positive=positive)
    np.testing.assert_allclose(gaps, exact, rtol=1e-6, atol=1e-12)
    if positive:
        assert codes.min() >= 0


def test_float32_path(digit_problem):
    X, D = digit_problem
    x32, d32 = X.astype(np.float32), D.astype(np.float32)
    c32 = sparse_encode(x32, d32, ALPHA, "cd", tol=1e-5)
    assert c32.dtype == np.float32
    gap = duality_gap(X, D, c32.astype(np.float64), ALPHA)
    assert np.all(gap <= 1e-5 * (X**2).sum(1) * 1.01)
    ref = _sklearn_objective(X, D, ALPHA)
    assert lasso_objective(X, D, c32.astype(np.float64), ALPHA).sum() <= ref.sum() * (1 + 1e-5)
    t32 = sparse_encode(torch.from_numpy(x32), torch.from_numpy(d32), ALPHA, "cd", tol=1e-5)
    assert t32.dtype == torch.float32
    np.testing.assert_array_equal(t32.numpy(), c32)


def test_warm_start_same_result(digit_problem):
    X, D = digit_problem
    opt = sparse_encode(X, D, ALPHA, "cd", tol=1e-12)
    # at the optimum: returned untouched, even with one sweep allowed
    np.testing.assert_array_equal(sparse_encode(X, D, ALPHA, "cd", init=opt, tol=1e-10,
                                                max_iter=1), opt)
    # from a rough start (wrong supports included): the same optimum
    rough = opt + np.random.default_rng(0).normal(scale=0.05, size=opt.shape)
    again = sparse_encode(X, D, ALPHA, "cd", init=rough, tol=1e-12)
    np.testing.assert_allclose(again, opt, atol=1e-6)
    np.testing.assert_allclose(lasso_objective(X, D, again, ALPHA),
                               lasso_objective(X, D, opt, ALPHA), rtol=1e-10)


def test_duplicate_and_zero_atoms(digit_problem):
    """Duplicated atoms make the support's Gram block singular (the Newton step must step
    aside); a zero atom has G_jj = 0 and keeps a zero code."""
    X, D = digit_problem
    D2 = np.concatenate([D, D[:10], np.zeros((1, D.shape[1]))])
    codes = sparse_encode(X, D2, ALPHA, "cd", tol=1e-9)
    assert np.all(codes[:, -1] == 0)
    gap = duality_gap(X, D2, codes, ALPHA)
    assert np.all(gap <= 1e-9 * (X**2).sum(1))
    ref = lasso_objective(X, D, sparse_encode(X, D, ALPHA, "cd", tol=1e-12), ALPHA)
    np.testing.assert_allclose(lasso_objective(X, D2, codes, ALPHA), ref, rtol=1e-7)


def test_max_iter_bounds_the_sweeps(digit_problem):
    X, D = digit_problem
    one = sparse_encode(X, D, ALPHA, "cd", max_iter=1, tol=0.0)
    full = sparse_encode(X, D, ALPHA, "cd", tol=1e-10)
    assert np.all(lasso_objective(X, D, one, ALPHA) >= lasso_objective(X, D, full, ALPHA) - 1e-12)
    assert lasso_objective(X, D, one, ALPHA).sum() > lasso_objective(X, D, full, ALPHA).sum()


def test_backend_errors():
    with pytest.raises(ValueError, match=r"^backend ") as info:
        sparse_encode(np.ones((2, 3)), np.eye(3), 1.0, "cd", backend="cuda")
    assert isinstance(info.value, InvalidInputError)


def test_no_writable_cache_falls_back(monkeypatch):
    """Where numba finds no writable cache location (read-only install) it raises at
    decoration time; the kernels are then compiled without a disk cache."""
    calls = []

    def fake_njit(cache=False, **options):
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return lambda fn: fn

    monkeypatch.setattr(lasso_cpu.numba, "njit", fake_njit)
    fn = lasso_cpu._jit(nogil=True)(lambda v: v + 1)
    assert fn(1) == 2 and calls == [True, False]


def test_numba_atom_sweep_matches_the_formula(digit_problem):
    """update_atoms on CPU (numba) against Mairal's update written out in torch."""
    from sparsenet.sparse_coding import OnlineState, online_step, update_atoms

    X, D0 = digit_problem
    state = OnlineState.start(torch.from_numpy(D0[:40]).clone())
    x = torch.from_numpy(X)
    for start in range(0, 200, 50):
        online_step(state, x[start : start + 50], 0.1)
    D, A, B = state.D.clone(), state.A, state.B
    dead = update_atoms(state, n_sweeps=2)
    for _ in range(2):
        for j in range(D.shape[0]):
            if not bool(dead[j]):
                u = D[j] + (B[j] - A[j] @ D) / A[j, j]
                D[j] = u / u.norm().clamp(min=1.0)
    torch.testing.assert_close(state.D, D, rtol=0, atol=1e-12)
    assert dead.sum() < len(dead)
