"""Pruning with reconstruction: exact Optimal Brain Surgeon and SparseGPT, layer by layer.

For a layer ``W`` (rows × cols) with inputs ``X`` (cols × n) the layer-wise problem is
``min ‖W X − Ŵ X‖²`` over ``Ŵ`` with the pruned entries at zero. Its rows are independent
and share the Hessian ``H = X Xᵀ`` (+ ``λ I``: ``damp`` × the mean of its diagonal).

- :func:`obs_matrix` (Hassibi & Stork, 1993): remove one weight at a time, the one of
  least ``ΔE_q = w_q² / [H⁻¹]_qq`` over all rows, update the rest of its row by
  ``δw = −(w_q / [H⁻¹]_qq) H⁻¹ e_q`` (zero at ``q``, so that entry stays zero), and take
  ``q`` out of that row's inverse ``H⁻¹ ← H⁻¹ − H⁻¹ e_q e_qᵀ H⁻¹ / [H⁻¹]_qq``. Exact
  and greedy; a row-wise inverse each, so for small layers: the reference.
- :func:`sparsegpt_matrix` (Frantar & Alistarh, 2023): columns left to right in blocks;
  the mask of each block (or each run of M for N:M) is chosen from
  ``w² / [U]_cc²`` with ``U`` the upper Cholesky factor of ``H⁻¹``, then each column's
  error is spread over the columns to its right, ``W[:, j:] −= (w − q)/U_jj · U[j, j:]``
  (the OBS update restricted to the not-yet-processed columns, the same for every row).

``ΔE`` is in units of ``‖W X − Ŵ X‖²`` (``H = X Xᵀ``; Hassibi's ``½ w²/[H⁻¹]_qq`` for
the Hessian ``2 X Xᵀ`` of that error is the same number).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SparsenetError
from .base import DEFAULT_CALIBRATION, Calibrated, CalibrationData
from .calibration import Stats, layer_view, raw_tensor, sequential
from .mask import Mask, Target, apply_mask
from .patterns import Pattern, choose, matrix_view, split_count

__all__ = ["SparseGPT", "OBS", "sparsegpt_matrix", "obs_matrix", "dampen", "write_layer"]


def dampen(h: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H + λI, dead)``: dead columns (never any input) get ``H_jj = 1``; ``λ = damp ·
    mean(diag H)``."""
    h = h.clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    lam = damp * float(torch.diagonal(h).mean())
    h.diagonal().add_(lam)
    return h, dead


def _inverse_factor(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of ``H⁻¹``."""
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(hinv, upper=True)
    except torch.linalg.LinAlgError:
        raise SparsenetError(
            "SparseGPT: the layer's input Hessian is not positive definite; "
            "raise damp (e.g. 0.1) or the calibration size"
        ) from None


@torch.no_grad()
def sparsegpt_matrix(
    w: torch.Tensor,
    h: torch.Tensor,
    count: int,
    *,
    blocksize: int = 128,
    damp: float = 0.01,
    pattern: Pattern | None = None,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``count`` entries of ``w`` (rows × cols) with SparseGPT's updates.

    Parameters
    ----------
    w : ``(rows, cols)`` weights (not modified).
    h : ``(cols, cols)`` ``X Xᵀ`` of the layer's inputs.
    count : entries to prune, ``~keep`` included; exact unless ``keep``/``pattern`` force more.
    blocksize : columns per block (a multiple of M for N:M).
    damp : ``λ`` as a fraction of the mean diagonal of ``h``.
    pattern : N:M, chosen lazily per run of M as the columns are reached.
    keep : existing keep-mask ``(rows, cols)``: its pruned entries are pruned first.

    Returns
    -------
    ``(w_new, keep_new)``: reconstructed weights (zero where pruned) and the keep-mask.
    """
    rows, cols = w.shape
    dtype = h.dtype
    W = w.to(dtype).clone()
    h, dead = dampen(h.to(dtype), damp)
    U = _inverse_factor(h)
    forced = torch.zeros(rows, cols, dtype=torch.bool, device=W.device) if keep is None else ~keep
    prune = torch.zeros_like(forced)
    group = pattern.m if pattern is not None else blocksize
    if pattern is not None:
        blocksize = max(pattern.m, blocksize // pattern.m * pattern.m)
    starts = list(range(0, cols, group))
    widths = [min(group, cols - s) for s in starts]
    quotas = iter(split_count(count, [rows * g for g in widths]))
    target = done = 0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = torch.diagonal(U1)
        for i in range(i2 - i1):
            if i % group == 0:
                j2 = min(i + group, i2 - i1)
                sc = W1[:, i:j2] ** 2 / d[i:j2] ** 2
                sc[:, dead[i1 + i : i1 + j2]] = -1.0  # no input ever: free to prune
                target += next(quotas)
                sel = choose(sc, target - done, pattern, forced[:, i1 + i : i1 + j2])
                prune[:, i1 + i : i1 + j2] = sel
                done += int(sel.sum())
            col = W1[:, i]
            q = col.masked_fill(prune[:, i1 + i], 0.0)
            Q1[:, i] = q
            err = (col - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return W.to(w.dtype), ~prune


@torch.no_grad()
def obs_matrix(
    w: torch.Tensor,
    h: torch.Tensor,
    count: int,
    *,
    damp: float = 0.0,
    pattern: Pattern | None = None,
    keep: torch.Tensor | None = None,
    max_elements: int = 50_000_000,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, float]]]:
    """Exact greedy Optimal Brain Surgeon on ``w`` (rows × cols) until ``count`` are pruned.

    With a ``pattern``, runs holding more than N live weights are emptied first (the
    least ``ΔE`` among their members each step), then the greedy goes on over all.

    Returns
    -------
    ``(w_new, keep_new, removed)``; ``removed`` lists ``(row, col, ΔE)`` in removal order
    (already-masked entries are taken out of the inverse first, without a ``ΔE``).
    """
    rows, cols = w.shape
    if rows * cols * cols > max_elements:
        raise SparsenetError(
            f"OBS: a {rows} x {cols} layer needs {rows} inverse Hessians of {cols}^2 entries "
            f"(> {max_elements:,}); use sparsegpt for layers this size"
        )
    dtype = torch.float64 if h.device.type == "cpu" else h.dtype
    W = w.to(dtype).clone()
    hd, _ = dampen(h.to(dtype), damp)
    hinv = torch.linalg.inv(hd).expand(rows, cols, cols).clone()  # (rows, cols, cols)
    alive = torch.ones(rows, cols, dtype=torch.bool, device=W.device) if keep is None else keep.clone()

    def take_out(i: int, q: int) -> None:
        hq = hinv[i, :, q].clone()
        hinv[i] -= torch.outer(hq, hq) / hq[q]
        hinv[i, q, :] = 0.0
        hinv[i, :, q] = 0.0

    for i, q in (~alive).nonzero().tolist():
        W[i, q] = 0.0
        take_out(i, q)
    removed: list[tuple[int, int, float]] = []
    full = cols // pattern.m * pattern.m if pattern is not None else 0
    while int((~alive).sum()) < count or (pattern is not None and _violates(alive, pattern, full)):
        diag = torch.diagonal(hinv, dim1=1, dim2=2)  # (rows, cols)
        de = (W * W / diag.clamp_min(torch.finfo(dtype).tiny)).masked_fill(~alive, float("inf"))
        if pattern is not None:
            cand = _violating(alive, pattern, full)
            if bool(cand.any()):
                de = de.masked_fill(~cand, float("inf"))
        flat = int(torch.argmin(de))
        i, q = divmod(flat, cols)
        hq = hinv[i, :, q]
        W[i] -= (W[i, q] / hq[q]) * hq
        W[i, q] = 0.0
        removed.append((i, q, float(de[i, q])))
        alive[i, q] = False
        take_out(i, q)
    return W.to(w.dtype), alive, removed


def _violating(alive: torch.Tensor, pattern: Pattern, full: int) -> torch.Tensor:
    """Live entries in runs with more than N live ones."""
    rows, cols = alive.shape
    out = torch.zeros_like(alive)
    if full:
        g = alive[:, :full].reshape(rows, -1, pattern.m)
        over = g.sum(2, keepdim=True) > pattern.n
        out[:, :full] = (g & over).reshape(rows, full)
    tail = alive[:, full:]
    out[:, full:] = tail & (tail.sum(1, keepdim=True) > pattern.n)
    return out


def _violates(alive: torch.Tensor, pattern: Pattern, full: int) -> bool:
    return bool(_violating(alive, pattern, full).any())


def write_layer(target: Target, w: torch.Tensor, keep: torch.Tensor, pattern: Pattern | None) -> None:
    """Write reconstructed weights into the stored tensor and mask it (a Mask only chain)."""
    m = target.module
    if parametrize.is_parametrized(m, target.tensor):
        chain: Any = m.parametrizations[target.tensor]  # type: ignore[index,union-attr]
        if not all(isinstance(p, Mask) for p in chain):
            raise SparsenetError(
                f"{target.key!r} carries a non-mask transform ({[type(p).__name__ for p in chain]}); "
                "reconstruction writes the stored weights, so prune before sharing/factorising"
            )
    raw = raw_tensor(m, target.tensor)
    with torch.no_grad():
        raw.copy_(w.reshape(raw.shape).to(raw.dtype))
    apply_mask(m, keep.reshape(raw.shape), target.tensor, None if pattern is None else str(pattern))


def _blocks(view_rows: int, blocks: int) -> list[slice]:
    step = view_rows // blocks
    return [slice(b * step, (b + 1) * step) for b in range(blocks)]


class _Reconstruct(Calibrated):
    """Sequential layer-by-layer pruning that solves each layer's least squares."""

    def _solve(
        self, key: str, row0: int, w: torch.Tensor, h: torch.Tensor, count: int,
        pattern: Pattern | None, keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def apply(
        self,
        model: nn.Module,
        targets: list[Target],
        counts: list[int],
        pattern: Pattern | None = None,
    ) -> None:
        want = {id(t): c for t, c in zip(targets, counts, strict=True)}

        def step(t: Target, stats: Stats) -> None:
            assert stats.gram is not None
            view = layer_view(t)
            w = matrix_view(t.value.detach())
            m = t.mask
            keep = None if m is None else matrix_view(m)
            parts = _blocks(view.rows, view.blocks)
            split = split_count(want[id(t)], [w[r].numel() for r in parts])
            new_w, new_keep = torch.empty_like(w), torch.empty_like(w, dtype=torch.bool)
            for b, (r, c) in enumerate(zip(parts, split, strict=True)):
                kb = None if keep is None else keep[r]
                new_w[r], new_keep[r] = self._solve(t.key, r.start, w[r], stats.gram[b], c,
                                                    pattern, kb)
            write_layer(t, new_w, new_keep, pattern)

        sequential(model, targets, self.calibration_inputs(), step, full=True,
                   batch_size=self.batch_size)


class SparseGPT(_Reconstruct):
    """SparseGPT (Frantar & Alistarh, 2023): fast approximate OBS reconstruction per layer.

    Parameters
    ----------
    data, calibration, batch_size : as :class:`~sparsenet.prune.base.Calibrated`.
    blocksize : columns per block (lazy batch updates; 128 as in the paper).
    damp : dampening ``λ = damp · mean(diag H)`` added to ``H = X Xᵀ``.
    """

    name = "sparsegpt"

    def __init__(
        self,
        data: CalibrationData | None = None,
        calibration: int = DEFAULT_CALIBRATION,
        blocksize: int = 128,
        damp: float = 0.01,
        batch_size: int = 256,
    ) -> None:
        super().__init__(data, calibration, batch_size)
        if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
            raise SparsenetError(f"bad blocksize {blocksize!r}; expected an integer >= 1")
        if not (isinstance(damp, (int, float)) and 0 <= damp < float("inf")):
            raise SparsenetError(f"bad damp {damp!r}; expected a finite number >= 0")
        self.blocksize, self.damp = blocksize, float(damp)

    def _solve(
        self, key: str, row0: int, w: torch.Tensor, h: torch.Tensor, count: int,
        pattern: Pattern | None, keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sparsegpt_matrix(w, h, count, blocksize=self.blocksize, damp=self.damp,
                                pattern=pattern, keep=keep)


class OBS(_Reconstruct):
    """Exact greedy Optimal Brain Surgeon per layer (Hassibi & Stork, 1993), for small layers.

    Parameters
    ----------
    data, calibration, batch_size : as :class:`~sparsenet.prune.base.Calibrated`.
    damp : dampening as for :class:`SparseGPT` (0 = the exact least-squares problem).
    max_elements : refuse layers needing more than this many inverse-Hessian entries.

    After :meth:`apply`, ``removed_`` maps each target key to its ``(row, col, ΔE)`` list.
    """

    name = "obs"

    def __init__(
        self,
        data: CalibrationData | None = None,
        calibration: int = DEFAULT_CALIBRATION,
        damp: float = 0.01,
        max_elements: int = 50_000_000,
        batch_size: int = 256,
    ) -> None:
        super().__init__(data, calibration, batch_size)
        if not (isinstance(damp, (int, float)) and 0 <= damp < float("inf")):
            raise SparsenetError(f"bad damp {damp!r}; expected a finite number >= 0")
        self.damp, self.max_elements = float(damp), max_elements
        self.removed_: dict[str, list[tuple[int, int, float]]] = {}

    def _solve(
        self, key: str, row0: int, w: torch.Tensor, h: torch.Tensor, count: int,
        pattern: Pattern | None, keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new_w, new_keep, removed = obs_matrix(w, h, count, damp=self.damp, pattern=pattern,
                                              keep=keep, max_elements=self.max_elements)
        self.removed_.setdefault(key, []).extend((row0 + i, q, de) for i, q, de in removed)
        return new_w, new_keep
