"""One-dimensional k-means for weight sharing: five initialisations, Lloyd iterations, optimum.

Deep Compression clusters each layer's weights with k-means and compares three
initialisations (``linear``, ``density``, ``random``); we add ``kmeans++`` (scikit-learn's
seeding) and ``optimal``, the globally optimal 1-D clustering of Ckmeans.1d.dp through the
``ckwrap`` package (a dynamic program; we do not write our own).

Lloyd iterations are hand-written here because in one dimension they are a few numpy
calls on the sorted data: with sorted centroids every cluster is a contiguous run of the
sorted values, so an iteration is one ``searchsorted`` of the k-1 midpoints plus prefix
sums, O(k log n) instead of scikit-learn's O(n k) distance matrix. The benchmark
(benchmarks/bench_share.py) measures the difference against ``sklearn.cluster.KMeans``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SparsenetError

__all__ = ["INITS", "KMeans1D", "init_centroids", "sse"]

INITS = ("linear", "density", "random", "kmeans++", "optimal")


def init_centroids(x: np.ndarray, k: int, init: str, seed: int | None = 0) -> np.ndarray:
    """Initial centroids for ``k`` clusters of the 1-D data ``x``.

    Parameters
    ----------
    x : (n,) float64, n >= 1.
    k : number of clusters, >= 1.
    init : ``"linear"`` (evenly spaced over [min, max], Han's default), ``"density"``
        (the x of k evenly spaced levels of the empirical CDF, i.e. quantiles
        (i + 0.5) / k), ``"random"`` (Forgy: k data points drawn without replacement) or
        ``"kmeans++"`` (scikit-learn's greedy k-means++ seeding).
    seed : seeds ``random`` and ``kmeans++``.

    Returns
    -------
    (k,) float64, sorted ascending.
    """
    if init == "linear":
        c = np.linspace(x.min(), x.max(), k)
    elif init == "density":
        c = np.quantile(x, (np.arange(k) + 0.5) / k)
    elif init == "random":
        rng = np.random.default_rng(seed)
        c = x[rng.choice(len(x), size=k, replace=len(x) < k)]
    elif init == "kmeans++":
        from sklearn.cluster import kmeans_plusplus

        c, _ = kmeans_plusplus(x.reshape(-1, 1), k, random_state=seed)
        c = c.ravel()
    else:
        raise SparsenetError(f"unknown init {init!r}; expected one of {INITS[:-1]}")
    return np.sort(np.asarray(c, dtype=np.float64))


def _assign(xs: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Cluster of each value: the number of centroid midpoints <= x (c sorted). (n,) int64."""
    return np.searchsorted((c[1:] + c[:-1]) / 2, xs, side="right")


def sse(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of ``x`` (n,) to their centres ``centers[labels]``, in float64."""
    d = np.asarray(x, np.float64) - np.asarray(centers, np.float64)[labels]
    return float(d @ d)


class KMeans1D:
    """k-means on one-dimensional data with a choice of initialisation.

    Follows scikit-learn's estimator contract: ``__init__`` stores arguments, ``fit``
    validates its input, returns ``self`` and sets the fitted attributes.

    Parameters
    ----------
    n_clusters : k >= 1.
    init : one of :data:`INITS`. ``"optimal"`` solves the problem exactly with
        Ckmeans.1d.dp (``ckwrap``); no Lloyd iterations follow, as the optimum is a fixed point.
    max_iter : most Lloyd iterations.
    tol : stop when the squared centroid shift ``sum((c_new - c_old)**2)`` is at most
        ``tol * var(x)`` (scikit-learn's criterion, so the two are comparable).
    seed : for the ``random`` and ``kmeans++`` initialisations.

    Attributes
    ----------
    cluster_centers_ : (k,) float64, ascending. Empty clusters keep their centroid
        (Lloyd's rule) and are never relocated.
    labels_ : (n,) int64 in [0, k).
    inertia_ : float, the sum of squared distances to the assigned centres.
    n_iter_ : int, Lloyd iterations run (0 for ``optimal`` and for the exact case).
    init_centers_ : (k,) float64, the centroids before iterating.

    Notes
    -----
    When ``x`` has at most k distinct values, every init returns those values as centres
    (padded by repeating the largest), so the clustering is exact (lossless).
    """

    def __init__(
        self,
        n_clusters: int = 8,
        init: str = "linear",
        max_iter: int = 300,
        tol: float = 1e-4,
        seed: int | None = 0,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def _validate(self, x: Any) -> np.ndarray:
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise SparsenetError(f"n_clusters={self.n_clusters!r}; expected an integer >= 1")
        if self.init not in INITS:
            raise SparsenetError(f"unknown init {self.init!r}; expected one of {INITS}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 0:
            raise SparsenetError(f"max_iter={self.max_iter!r}; expected an integer >= 0")
        if not (np.isfinite(self.tol) and self.tol >= 0):
            raise SparsenetError(f"tol={self.tol!r}; expected a finite number >= 0")
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise SparsenetError(
                f"KMeans1D.fit: expected a non-empty 1-D array, got shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise SparsenetError("KMeans1D.fit: the data contain NaN or infinity")
        return arr

    def fit(self, x: Any) -> KMeans1D:
        """Cluster ``x`` (n,). Returns ``self``."""
        arr = self._validate(x)
        k = int(self.n_clusters)
        uniq = np.unique(arr)
        self.n_iter_ = 0
        if len(uniq) <= k:
            centers = np.concatenate([uniq, np.full(k - len(uniq), uniq[-1])])
            self.init_centers_ = centers.copy()
        elif self.init == "optimal":
            centers = self._optimal(arr, k)
            self.init_centers_ = centers.copy()
        else:
            self.init_centers_ = init_centroids(arr, k, self.init, self.seed)
            centers = self._lloyd(arr, self.init_centers_.copy())
        self.cluster_centers_ = centers
        self.labels_ = _assign(arr, centers)
        if len(uniq) <= k:
            # Repeated padding centres would tie with the last value; searchsorted puts such a
            # value after all equal midpoints, so map it back to the first copy.
            self.labels_ = np.minimum(self.labels_, len(uniq) - 1)
        self.inertia_ = sse(arr, centers, self.labels_)
        return self

    def _optimal(self, x: np.ndarray, k: int) -> np.ndarray:
        import ckwrap

        res = ckwrap.ckmeans(x, k)
        centers = np.sort(np.asarray(res.centers, dtype=np.float64))
        if len(centers) < k:  # ckwrap found fewer non-empty clusters; pad like empty ones
            centers = np.concatenate([centers, np.full(k - len(centers), centers[-1])])
        return centers

    def _lloyd(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        xs = np.sort(x)  # (n,)
        prefix = np.concatenate([[0.0], np.cumsum(xs)])  # (n + 1,)
        n = len(xs)
        threshold = self.tol * float(xs.var())
        for it in range(1, int(self.max_iter) + 1):
            # Cluster j is the run xs[bounds[j]:bounds[j + 1]] (values between midpoints).
            bounds = np.concatenate(
                [[0], np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="left"), [n]]
            )
            counts = np.diff(bounds)
            sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
            new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
            # Means of consecutive runs stay ordered; sorting guards against rounding ties.
            new.sort()
            shift = float(((new - c) ** 2).sum())
            c = new
            self.n_iter_ = it
            if shift <= threshold:
                break
        return c
