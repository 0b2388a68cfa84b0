"""Sparsity patterns: unstructured, and N:M (at most N non-zeros in every M along the input).

Every weight is seen as a ``(rows, cols)`` matrix: row ``i`` is output unit ``i``, the
columns its inputs (a Linear ``(out, in)`` as it is, a convolution ``(out, in/groups, *k)``
flattened to ``(out, in/groups · prod(k))``, the order of its unfolded input). An N:M
pattern groups each row's columns in runs of M (``0..M-1``, ``M..2M-1``, ...; a shorter
run at the end when M does not divide ``cols``) and keeps at most N of each run. "2:4"
is the pattern sparse tensor cores run at 50 % sparsity.

A criterion imposes the pattern in two steps: :func:`nm_prune` marks the M − N lowest
scores of every run (already pruned entries first), then the ranking goes on as for
unstructured pruning to the requested count, so a sparsity above ``1 − N/M`` removes more
(never reviving one), and the count is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SpecError

__all__ = [
    "Pattern",
    "parse_pattern",
    "matrix_view",
    "nm_prune",
    "choose",
    "choose_rows",
    "satisfies",
    "split_count",
]


@dataclass(frozen=True)
class Pattern:
    """``n`` non-zeros at most in every run of ``m`` consecutive inputs (``0 < n < m``)."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.m, int) and 0 < self.n < self.m):
            raise SpecError(f"bad N:M pattern {self.n}:{self.m}; expected integers 0 < N < M")

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def min_sparsity(self) -> float:
        """``1 − N/M``: the sparsity the pattern alone implies on full runs."""
        return 1.0 - self.n / self.m

    def min_pruned(self, cols: int) -> int:
        """Entries of one row of ``cols`` inputs the pattern prunes at least."""
        full, rest = divmod(cols, self.m)
        return full * (self.m - self.n) + max(0, rest - self.n)


def parse_pattern(text: str | Pattern | None) -> Pattern | None:
    """``"2:4"`` → ``Pattern(2, 4)``; ``None``, ``""`` and ``"unstructured"`` → ``None``."""
    if text is None or isinstance(text, Pattern):
        return text
    s = str(text).strip().lower()
    if s in ("", "unstructured", "none"):
        return None
    n, sep, m = s.partition(":")
    try:
        if not sep:
            raise ValueError
        return Pattern(int(n), int(m))
    except ValueError:
        raise SpecError(
            f"bad pattern {text!r}; expected 'unstructured' or N:M with integers 0 < N < M (e.g. 2:4)"
        ) from None


def matrix_view(t: torch.Tensor) -> torch.Tensor:
    """The ``(rows, cols)`` view of a weight: dimension 0 the outputs, the rest flattened."""
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def nm_prune(scores: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Boolean ``(rows, cols)``: the ``M − N`` lowest scores of every run (True = prune).

    ``-inf`` (already pruned) entries are chosen first, so a run pruned beyond the pattern
    before stays so and a re-pruned mask never grows. A trailing run of ``r < M`` columns
    loses ``max(0, r − N)``.

    Parameters
    ----------
    scores : ``(rows, cols)``, higher = more important.
    """
    rows, cols = scores.shape
    m = pattern.m
    full = cols // m * m
    out = torch.zeros(rows, cols, dtype=torch.bool, device=scores.device)
    if full:
        g = scores[:, :full].reshape(rows, full // m, m)  # (rows, groups, M)
        idx = torch.topk(g, m - pattern.n, dim=2, largest=False).indices
        sel = torch.zeros_like(g, dtype=torch.bool).scatter_(2, idx, True)
        out[:, :full] = sel.reshape(rows, full)
    rest = cols - full
    if rest > pattern.n:
        idx = torch.topk(scores[:, full:], rest - pattern.n, dim=1, largest=False).indices
        out[:, full:] = torch.zeros(rows, rest, dtype=torch.bool, device=scores.device).scatter_(
            1, idx, True
        )
    return out


def satisfies(keep: torch.Tensor, pattern: Pattern) -> bool:
    """Whether the keep-mask (any weight shape) has at most N non-zeros in every run of M."""
    km = matrix_view(keep).to(torch.int64)
    rows, cols = km.shape
    full = cols // pattern.m * pattern.m
    ok = bool((km[:, :full].reshape(rows, -1, pattern.m).sum(2) <= pattern.n).all()) if full else True
    return ok and bool((km[:, full:].sum(1) <= pattern.n).all())


def split_count(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` over parts of ``sizes`` in proportion, summing exactly to ``total``.

    Cumulative rounding: part ``i`` gets ``round(f·S_{i+1}) − round(f·S_i)`` with
    ``f = total / sum(sizes)`` and ``S`` the running sums, so no part exceeds its size.
    """
    whole = sum(sizes)
    if whole == 0:
        return [0] * len(sizes)
    out, run, done = [], 0, 0
    for s in sizes:
        run += s
        upto = round(total * run / whole)
        out.append(upto - done)
        done = upto
    return out


def _mandatory(scores: torch.Tensor, pattern: Pattern | None, forced: torch.Tensor | None) -> torch.Tensor:
    s = scores if forced is None else scores.masked_fill(forced, float("-inf"))
    mand = nm_prune(s, pattern) if pattern is not None else torch.zeros_like(s, dtype=torch.bool)
    return mand if forced is None else mand | forced


def choose(
    scores: torch.Tensor,
    quota: int,
    pattern: Pattern | None = None,
    forced: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entries to prune (True) of a ``(rows, cols)`` chunk: ``forced`` ones, the pattern's
    M − N lowest per run, then the lowest others until ``quota`` (more when the first two
    already exceed it)."""
    mand = _mandatory(scores, pattern, forced)
    extra = min(quota, scores.numel()) - int(mand.sum())
    if extra > 0:
        rest = scores.masked_fill(mand, float("inf")).flatten()
        idx = torch.topk(rest, extra, largest=False).indices
        mand = mand.flatten().index_fill(0, idx, True).reshape(scores.shape)
    return mand


def choose_rows(
    scores: torch.Tensor,
    quotas: torch.Tensor,
    pattern: Pattern | None = None,
    forced: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`choose` within each row: row ``i`` loses ``quotas[i]`` (or its mandatory ones)."""
    mand = _mandatory(scores, pattern, forced)
    rest = scores.masked_fill(mand, float("-inf"))
    order = torch.argsort(rest, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    )
    return mand | (rank < quotas.to(scores.device).reshape(-1, 1))
