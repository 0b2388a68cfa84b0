"""``sparse_encode``: the one entry point to the lasso and OMP solvers.

Objective (scikit-learn's convention, atoms as rows of ``D``), for each sample x::

    min_c  ½ ||x − c D||² + α ||c||₁          (c ≥ 0 when positive=True)

scikit-learn's ``sparse_encode(X, D, alpha=α, algorithm="lasso_cd")`` solves exactly this
problem: internally it builds ``Lasso(alpha=α / n_features)``, whose objective
``1/(2 n_features) ||x − c D||² + α/n_features ||c||₁`` is ours divided by ``n_features``.
So the same ``alpha`` gives the same codes here and there.

``method="cd"`` runs a numba-compiled per-sample coordinate descent (:mod:`.lasso_cpu`) when
the data are on the CPU, and the batched torch solver (:mod:`.lasso`) otherwise (GPU
tensors, or ``backend="torch"``); both stop on the same per-sample duality gap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._validation import InvalidInputError, as_tensor_2d, check_alpha, check_positive_int, to_output
from .lasso import duality_gap_gram, lasso_gram
from .omp import omp_gram

__all__ = ["sparse_encode", "lasso_objective", "duality_gap", "METHODS"]

METHODS = ("fista", "cd", "omp")
BACKENDS = ("auto", "torch", "numba")
_CHUNK = 16384  # samples solved together (bigger batches amortise per-op overhead)


def _prepare(X: Any, D: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = as_tensor_2d(X, "X")
    device = x.device if isinstance(X, torch.Tensor) else None
    d = as_tensor_2d(D, "D", dtype=x.dtype, device=device)
    if d.shape[1] != x.shape[1]:
        raise InvalidInputError(
            f"D must have shape (n_atoms, n_features) with n_features={x.shape[1]} as in X, "
            f"got D of shape {tuple(d.shape)}"
        )
    if d.shape[0] == 0:
        raise InvalidInputError("D must hold at least one atom, got shape (0, n_features)")
    return x, d


def sparse_encode(
    X: Any,
    D: Any,
    alpha: float,
    method: str = "fista",
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    init: Any = None,
    positive: bool = False,
    n_nonzero_coefs: int | None = None,
    backend: str = "auto",
) -> Any:
    """Sparse codes of the rows of ``X`` over the atoms (rows) of ``D``.

    Parameters
    ----------
    X : array or Tensor, shape (n_samples, n_features)
        Data. numpy in → numpy out, torch in → torch out (same dtype and device; float32
        and float64 are kept, other dtypes become float64).
    D : array or Tensor, shape (n_atoms, n_features)
        Dictionary, one atom per row. Converted to X's dtype and device.
    alpha : float > 0
        Lasso methods: the weight of ``α||c||₁`` in ``½||x − cD||² + α||c||₁``.
        ``"omp"``: stop a sample once its squared residual ``||x − cD||²`` is ≤ alpha
        (scikit-learn's ``tol`` for OMP).
    method : {"fista", "cd", "omp"}
        FISTA with restarts and a support-Newton polish, coordinate descent (compiled
        per-sample kernel on CPU, working-set batched torch solver elsewhere; see
        ``backend``), or batch orthogonal matching pursuit.
    max_iter : int
        FISTA iterations or coordinate-descent sweeps (per sample for the CPU kernel;
        unused by OMP).
    tol : float
        Stop a sample when its duality gap is ≤ ``tol · ||x||²`` (scikit-learn's ``Lasso``
        scale). Unused by OMP.
    init : array or Tensor, shape (n_samples, n_atoms), optional
        Warm start for the lasso methods.
    positive : bool
        Constrain codes to be non-negative (lasso methods only).
    n_nonzero_coefs : int, optional
        OMP only: at most this many atoms per sample (default ``min(n_features, n_atoms)``).
    backend : {"auto", "torch", "numba"}
        ``method="cd"`` only: "numba" is the compiled CPU kernel (fastest on CPU), "torch"
        the batched torch solver (any device); "auto" takes numba for CPU data and torch
        otherwise. FISTA and OMP always run in torch.

    Returns
    -------
    codes : same kind as X, shape (n_samples, n_atoms)
    """
    x, d = _prepare(X, D)
    alpha = check_alpha(alpha)
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    max_iter = check_positive_int(max_iter, "max_iter")
    try:
        tol_f = float(tol)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"tol must be a number >= 0, got {tol!r}") from exc
    if not tol_f >= 0:
        raise InvalidInputError(f"tol must be a number >= 0, got {tol!r}")
    n, k = x.shape[0], d.shape[0]
    c0 = None
    if init is not None:
        if method == "omp":
            raise InvalidInputError("init is not used by method='omp'; pass init=None")
        c0 = as_tensor_2d(init, "init", dtype=x.dtype, device=x.device)
        if tuple(c0.shape) != (n, k):
            raise InvalidInputError(
                f"init must have shape (n_samples, n_atoms)=({n}, {k}), got {tuple(c0.shape)}"
            )
        if positive:
            c0 = c0.clamp(min=0)
    if method == "omp":
        if positive:
            raise InvalidInputError("positive=True is not supported by method='omp'")
        nnz = min(x.shape[1], k) if n_nonzero_coefs is None else n_nonzero_coefs
        nnz = check_positive_int(nnz, "n_nonzero_coefs")
    elif n_nonzero_coefs is not None:
        raise InvalidInputError("n_nonzero_coefs is only used by method='omp'")
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and x.device.type != "cpu":
        raise InvalidInputError(
            f"backend='numba' needs CPU data, got a tensor on {x.device}; use backend='torch'"
        )
    if method == "cd" and backend != "torch" and x.device.type == "cpu":
        return to_output(_encode_cd_cpu(x, d, alpha, c0, max_iter, tol_f, positive), X)

    G = d @ d.T  # (k, k)
    codes = torch.zeros(n, k, dtype=x.dtype, device=x.device)
    for start in range(0, n, _CHUNK):
        xb = x[start : start + _CHUNK]
        B = xb @ d.T  # (b, k)
        xsq = (xb * xb).sum(1)
        if method == "omp":
            codes[start : start + _CHUNK] = omp_gram(G, B, xsq, nnz, alpha)
            continue
        cb = torch.zeros_like(B) if c0 is None else c0[start : start + _CHUNK].clone()
        cb, _ = lasso_gram(
            G, B, xsq, alpha, cb, inner=method, max_iter=max_iter, tol=tol_f, positive=positive,
            max_support=x.shape[1],
        )
        codes[start : start + _CHUNK] = cb
    return to_output(codes, X)


def _encode_cd_cpu(
    x: torch.Tensor, d: torch.Tensor, alpha: float, c0: torch.Tensor | None, max_iter: int,
    tol: float, positive: bool,
) -> torch.Tensor:
    """``method="cd"`` on CPU: the numba kernel, chunk by chunk (numba imported lazily)."""
    from .lasso_cpu import lasso_cd_cpu

    # the products in torch, whose thread pool is in use anyway, rather than waking numpy's
    # BLAS pool as well (on a 2-core machine every extra spinning pool competes with numba)
    G = (d @ d.T).numpy()
    chunks = []
    for start in range(0, x.shape[0], _CHUNK):
        xb = x[start : start + _CHUNK]
        cb = None if c0 is None else c0[start : start + _CHUNK].numpy()
        codes, _ = lasso_cd_cpu(
            G, (xb @ d.T).numpy(), (xb * xb).sum(1, dtype=torch.float64).numpy(), alpha, cb,
            max_iter=max_iter, tol=tol, positive=positive,
        )
        chunks.append(codes)
    if not chunks:
        return torch.zeros(0, d.shape[0], dtype=x.dtype)
    return torch.from_numpy(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))


def _codes_for(codes: Any, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``codes`` as a tensor like ``x``; InvalidInputError unless (n_samples, n_atoms)."""
    c = as_tensor_2d(codes, "codes", dtype=x.dtype, device=x.device)
    if tuple(c.shape) != (x.shape[0], d.shape[0]):
        raise InvalidInputError(
            f"codes must have shape (n_samples, n_atoms)=({x.shape[0]}, {d.shape[0]}), "
            f"got {tuple(c.shape)}"
        )
    return c


def lasso_objective(X: Any, D: Any, codes: Any, alpha: float) -> Any:
    """Per-sample objective ``½||x − cD||² + α||c||₁``, shape (n_samples,), same kind as X."""
    x, d = _prepare(X, D)
    c = _codes_for(codes, x, d)
    alpha = check_alpha(alpha)
    r = x - c @ d
    return to_output(0.5 * (r * r).sum(1) + alpha * c.abs().sum(1), X)


def duality_gap(X: Any, D: Any, codes: Any, alpha: float, positive: bool = False) -> Any:
    """Per-sample lasso duality gap of ``codes``, shape (n_samples,), same kind as X.

    The gap bounds the distance of each sample's objective from its optimum; the solvers
    stop when it is ≤ ``tol · ||x||²``.
    """
    x, d = _prepare(X, D)
    c = _codes_for(codes, x, d)
    alpha = check_alpha(alpha)
    B = x @ d.T
    Q = B - c @ (d @ d.T)
    _, gap = duality_gap_gram(c, Q, B, (x * x).sum(1), alpha, positive)
    return to_output(gap, X)
