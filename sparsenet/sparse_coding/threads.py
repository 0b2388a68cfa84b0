"""One thread count for every pool DeepSC uses: numba's, torch's and the BLAS/OpenMP ones.

numba's workers (the compiled encoders), torch's intra-op pool (whitening, DrLIM, the
classifier) and numpy/scikit-learn's BLAS each default to all cores; on a 2-core machine
three spinning pools fight for two cores. :func:`limit_threads` sets all three inside a
``with`` block and restores them afterwards, so a caller's ``n_jobs``/``--threads`` means
the same everywhere and nothing has to be set in the user's shell.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ._checks import InvalidInputError

__all__ = ["limit_threads", "resolve_n_jobs"]


def resolve_n_jobs(n_jobs: int | None) -> int | None:
    """scikit-learn's convention: None → leave the pools alone, -1 → all cores, k ≥ 1 → k."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise InvalidInputError(f"n_jobs={n_jobs!r}: expected None, -1 or an integer >= 1")
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


@contextmanager
def limit_threads(n_jobs: int | None) -> Iterator[int | None]:
    """Run the block with ``n_jobs`` threads in numba, torch and BLAS/OpenMP; yields the count.

    numba's count is capped at the pool it started with (``NUMBA_NUM_THREADS``). With
    ``None`` nothing is changed.
    """
    n = resolve_n_jobs(n_jobs)
    if n is None:
        yield None
        return
    import numba
    from threadpoolctl import threadpool_limits

    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(min(n, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        numba.set_num_threads(old_numba)
        torch.set_num_threads(old_torch)
