"""Online dictionary learning (Mairal, Bach, Ponce & Sapiro, JMLR 2010 / ICML 2009), in torch.

For mini-batches ``X_t`` (η, p) the learner keeps the sufficient statistics::

    A = Σ_t β_t-weighted  C_tᵀ C_t / η      (k, k)
    B = Σ_t β_t-weighted  C_tᵀ X_t / η      (k, p)

where ``C_t = sparse_encode(X_t, D, α)``, and updates each atom (a row of ``D``) in turn by
block-coordinate descent on the surrogate ``½ tr(D ᵀA D) − tr(Dᵀ B)`` (Mairal's Algorithm 2)::

    d_j ← d_j + (B_j − A_j D) / A_jj,     d_j ← d_j / max(||d_j||, 1)

so every atom keeps norm ≤ 1. Atoms whose ``A_jj`` stays (almost) zero are dead: they are
replaced by the worst-reconstructed samples of the batch. The forgetting factor β follows
Mairal's §3.4 heuristic, the same schedule as scikit-learn's ``MiniBatchDictionaryLearning``,
so the two differ only in the sparse-coding step and in dead-atom resampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import distributed as dist_
from .encode import sparse_encode
from .persist import persistable

__all__ = ["OnlineState", "init_dictionary", "online_step", "update_atoms", "dictionary_objective"]

_DEAD_REL = 1e-6  # A_jj below this fraction of the mean diagonal marks a dead atom


@persistable
@dataclass
class OnlineState:
    """Everything online learning carries between mini-batches.

    Attributes
    ----------
    D : Tensor (n_atoms, n_features)
        The dictionary, atoms as rows, each of norm ≤ 1.
    A : Tensor (n_atoms, n_atoms)
        Running ``Σ Cᵀ C`` (weighted per sample).
    B : Tensor (n_atoms, n_features)
        Running ``Σ Cᵀ X`` (weighted per sample).
    step : int
        Mini-batches seen.
    n_resampled : int
        Dead atoms replaced so far.
    """

    D: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    step: int = 0
    n_resampled: int = 0

    @classmethod
    def start(cls, D: torch.Tensor) -> OnlineState:
        k = D.shape[0]
        return cls(D=D.clone(), A=D.new_zeros(k, k), B=torch.zeros_like(D))


def _normalise_rows(M: torch.Tensor) -> torch.Tensor:
    norms = M.norm(dim=1, keepdim=True)
    return M / torch.where(norms > 0, norms, torch.ones_like(norms))


def init_dictionary(X: torch.Tensor, n_atoms: int, generator: torch.Generator) -> torch.Tensor:
    """``n_atoms`` distinct random rows of ``X`` scaled to unit norm (Gaussian noise rows when
    X has fewer non-zero rows than atoms), shape (n_atoms, n_features)."""
    n, p = X.shape
    nonzero = torch.nonzero(X.norm(dim=1) > 0).flatten()
    perm = nonzero[torch.randperm(nonzero.numel(), generator=generator)][:n_atoms]
    D = X[perm]
    if D.shape[0] < n_atoms:
        extra = torch.randn(n_atoms - D.shape[0], p, generator=generator, dtype=torch.float64)
        D = torch.cat([D, extra.to(X.dtype)])
    return _normalise_rows(D)


def update_atoms(state: OnlineState, n_sweeps: int = 1) -> torch.Tensor:
    """Block-coordinate descent on the atoms, in place; returns a mask of dead atoms.

    Hand-written: each atom's update depends on the atoms updated before it (Gauss-Seidel),
    which no library routine does; one sweep costs k small (k × p) products. CPU
    dictionaries use the numba loop of :mod:`.atoms_cpu` (same arithmetic, without k rounds
    of tensor-op overhead).
    """
    D, A, B = state.D, state.A, state.B
    diag = torch.diagonal(A)
    dead = diag <= _DEAD_REL * diag.mean().clamp(min=torch.finfo(A.dtype).tiny)
    if D.device.type == "cpu" and D.is_contiguous():
        from .atoms_cpu import atom_sweeps_cpu

        atom_sweeps_cpu(D.numpy(), A.numpy(), B.numpy(), dead.numpy(), n_sweeps)
        return dead
    for _ in range(n_sweeps):
        for j in range(D.shape[0]):
            if bool(dead[j]):
                continue
            u = D[j] + (B[j] - A[j] @ D) / A[j, j]
            D[j] = u / u.norm().clamp(min=1.0)
    return dead


def _resample(state: OnlineState, dead: torch.Tensor, X: torch.Tensor, codes: torch.Tensor) -> None:
    """Replace dead atoms by the batch's worst-reconstructed samples (unit norm), in place."""
    idx = torch.nonzero(dead).flatten()
    if idx.numel() == 0:
        return
    err = ((X - codes @ state.D) ** 2).sum(1)
    worst = torch.argsort(err, descending=True)[: idx.numel()]
    new = _normalise_rows(X[worst])
    usable = new.norm(dim=1) > 0
    idx, new = idx[: usable.sum()], new[usable]
    state.D[idx] = new
    state.A[idx, :] = 0
    state.A[:, idx] = 0
    state.B[idx] = 0
    state.n_resampled += int(idx.numel())


def online_step(
    state: OnlineState,
    X: torch.Tensor,
    alpha: float,
    *,
    method: str = "cd",
    max_iter: int = 1000,
    tol: float = 1e-4,
    positive_code: bool = False,
    resample: bool = True,
) -> torch.Tensor:
    """One mini-batch of online dictionary learning, in place; returns the batch's codes.

    Parameters
    ----------
    state : OnlineState
        Updated in place.
    X : Tensor (batch, n_features)
        The mini-batch, same dtype/device as ``state.D``.
    alpha : float
        Lasso weight for the codes.
    method, max_iter, tol, positive_code
        Passed to :func:`sparse_encode`.
    resample : bool
        Replace dead atoms with badly-reconstructed samples of this batch.

    Under ``torch.distributed`` every rank passes the same global mini-batch: each encodes
    its contiguous shard, the shard's ``CᵀC`` and ``CᵀX`` are summed with ``all_reduce``
    and the codes gathered, so every rank applies the same update to the same state.
    """
    eta = X.shape[0]
    lo, hi = dist_.shard_bounds(eta)
    xs = X[lo:hi]
    local = (
        sparse_encode(xs, state.D, alpha, method, max_iter=max_iter, tol=tol, positive=positive_code)
        if hi > lo
        else X.new_zeros(0, state.D.shape[0])
    )
    ctc, ctx = dist_.all_reduce_sum(local.T @ local), dist_.all_reduce_sum(local.T @ xs)
    codes = dist_.all_gather_rows(local, eta)
    step = state.step
    # Mairal et al. §3.4 forgetting schedule (as in scikit-learn's MiniBatchDictionaryLearning)
    theta = (step + 1) * eta if step < eta - 1 else eta * eta + step + 1 - eta
    beta = (theta + 1 - eta) / (theta + 1)
    state.A.mul_(beta).add_(ctc, alpha=1.0 / eta)
    state.B.mul_(beta).add_(ctx, alpha=1.0 / eta)
    dead = update_atoms(state)
    if resample and state.step > 0:
        _resample(state, dead, X, codes)
    state.step += 1
    return codes


def dictionary_objective(
    X: torch.Tensor, D: torch.Tensor, alpha: float, *, tol: float = 1e-8
) -> float:
    """Mean over samples of ``min_c ½||x − cD||² + α||c||₁`` (codes solved to ``tol``)."""
    codes = sparse_encode(X, D, alpha, "cd", tol=tol, max_iter=10_000)
    r = X - codes @ D
    return float((0.5 * (r * r).sum(1) + alpha * codes.abs().sum(1)).mean())
