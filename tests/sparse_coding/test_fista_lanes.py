"""DeepSC's encoder on patches side by side is the one-patch encoder, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from sparsenet.sparse_coding import layer_kernel as lk
from sparsenet.sparse_coding.eig_small import LANES, gather_lanes, lmax_gathered
from sparsenet.sparse_coding.fista_cpu import fista_one, select_first_block
from sparsenet.sparse_coding.fista_lanes import fista_lanes


@pytest.mark.parametrize("k", [12, 64])
@pytest.mark.parametrize("max_iter", [1, 5, 10])
@pytest.mark.parametrize("nl", [3, 20, LANES])
def test_lanes_give_fista_ones_codes(k, max_iter, nl):
    rng = np.random.default_rng(k * 1000 + max_iter * 10 + nl)
    atoms = rng.standard_normal((k, 25))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    g = (atoms @ atoms.T).astype(np.float32)
    alpha = 0.4
    n_solve = 4 * LANES
    # correlations of varied sparsity: some patches need a block of 8, others of 16
    bs = (rng.standard_normal((n_solve, k)) * rng.uniform(0.2, 1.5, (n_solve, 1))).astype(
        np.float32)
    sel = np.zeros((n_solve, 16), dtype=np.int64)
    topv = np.empty(k)
    widths = np.array([select_first_block(bs[t], alpha, sel[t], topv) for t in range(n_solve)])
    assert {8, min(k, 16)} <= set(widths.tolist())
    s = lk._scratch(k, np.float32)
    for m in sorted(set(widths.tolist())):
        slots = np.flatnonzero(widths == m)[:nl].astype(np.int64)
        lanes = LANES if len(slots) >= 8 else len(slots)
        codes = np.zeros((n_solve, k), dtype=np.float32)
        lips = np.full(n_solve, np.nan)
        a = gather_lanes(g, sel, slots, len(slots), m, lanes)
        lmax_gathered(a, slots, len(slots), m, lanes, lips)
        fista_lanes(a, bs, sel, slots, len(slots), m, lanes, alpha, lips, codes)
        for sid in slots:
            want = np.empty(k, dtype=np.float32)
            fista_one(g, bs[sid], 0.0, want, alpha, 0.0, max_iter, False, False, 25, s)
            got = codes[sid]
            assert np.array_equal(got.view(np.int32), want.view(np.int32)), sid
        assert (codes[slots] != 0).any(axis=1).mean() > 0.8  # not a test of zeros
        others = np.setdiff1d(np.arange(n_solve), slots)
        assert not codes[others].any()  # only the lanes' solves are written
