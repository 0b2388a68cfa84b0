"""The dictionary-learning atom sweep on CPU, compiled with numba.

Mairal's block-coordinate update of every atom in turn (a row of D)::

    d_j ← d_j + (B_j − A_j D) / A_jj,     d_j ← d_j / max(||d_j||, 1)

Hand-written: each atom's update reads the atoms already updated in the same sweep
(Gauss-Seidel), so no library routine does it in one call, and in torch it costs k rounds of
small tensor ops (a few ms for 128 atoms, as much as coding a mini-batch with
:mod:`.lasso_cpu`). :func:`sparsenet.sparse_coding.update_atoms` calls this for CPU
dictionaries and keeps the torch loop for other devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .lasso_cpu import _jit

__all__ = ["atom_sweeps_cpu"]


@_jit(nogil=True, fastmath=False)
def _sweeps(D: Any, A: Any, B: Any, dead: Any, n_sweeps: int) -> None:
    k, p = D.shape
    u = np.empty(p, dtype=np.float64)
    for _ in range(n_sweeps):
        for j in range(k):
            if dead[j]:
                continue
            for f in range(p):
                u[f] = B[j, f]
            for i in range(k):
                a = A[j, i]
                if a != 0.0:
                    for f in range(p):
                        u[f] -= a * D[i, f]
            ajj = float(A[j, j])
            nrm = 0.0
            for f in range(p):
                u[f] = D[j, f] + u[f] / ajj
                nrm += u[f] * u[f]
            scale = 1.0 / max(np.sqrt(nrm), 1.0)
            for f in range(p):
                D[j, f] = u[f] * scale


def atom_sweeps_cpu(D: np.ndarray, A: np.ndarray, B: np.ndarray, dead: np.ndarray,
                    n_sweeps: int = 1) -> None:
    """``n_sweeps`` sweeps of the atom update, in place on ``D`` (k, p).

    ``A`` (k, k) and ``B`` (k, p) are the sufficient statistics (same dtype as D), ``dead``
    (k,) bool marks atoms to leave alone. ``D`` must be C-contiguous (it is written in place).
    """
    _sweeps(D, A, B, dead, int(n_sweeps))
