import itertools

import numpy as np
import pytest

from sparsenet.errors import SparsenetError
from sparsenet.share.kmeans import INITS, KMeans1D, init_centroids, sse


def _data(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0, 0.05, n)
    if kind == "laplace":
        return rng.laplace(0, 0.02, n)
    # bimodal, like a pruned layer's weights: two humps away from zero
    return np.concatenate([rng.normal(-0.1, 0.02, n // 2), rng.normal(0.08, 0.03, n - n // 2)])


@pytest.mark.parametrize("init", INITS)
def test_fit_invariants(init):
    x = _data("normal", 3000, 1)
    km = KMeans1D(16, init=init, seed=3).fit(x)
    c = km.cluster_centers_
    assert c.shape == (16,) and np.all(np.diff(c) >= 0)
    assert km.labels_.shape == x.shape and km.labels_.min() >= 0 and km.labels_.max() < 16
    # Every point is labelled with a nearest centre.
    d = np.abs(x[:, None] - c[None, :])
    assert np.allclose(d[np.arange(len(x)), km.labels_], d.min(1), rtol=0, atol=1e-15)
    assert km.inertia_ == pytest.approx(sse(x, c, km.labels_), rel=1e-12)
    assert c.min() >= x.min() and c.max() <= x.max()


@pytest.mark.parametrize("kind", ["normal", "laplace", "bimodal"])
@pytest.mark.parametrize("k", [2, 4, 16, 32])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimal_sse_not_worse_than_any_init(kind, k, seed):
    x = _data(kind, 2000, seed)
    opt = KMeans1D(k, init="optimal").fit(x).inertia_
    for init in INITS[:-1]:
        other = KMeans1D(k, init=init, seed=seed, max_iter=300, tol=0).fit(x).inertia_
        # Relative slack of 1e-12 only covers float64 rounding of the two sums (Lloyd can reach
        # the same partition); any genuinely worse clustering differs by far more.
        assert opt <= other * (1 + 1e-12), (init, opt, other)


def test_optimal_matches_exhaustive_search():
    # The optimal 1-D partition is contiguous in sorted order: brute-force all cut points.
    rng = np.random.default_rng(5)
    x = np.sort(rng.normal(size=11))
    k = 3
    best = np.inf
    for cuts in itertools.combinations(range(1, len(x)), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(float(((p - p.mean()) ** 2).sum()) for p in parts))
    assert KMeans1D(k, init="optimal").fit(x).inertia_ == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("init", INITS)
def test_lossless_when_distinct_values_fit(init):
    rng = np.random.default_rng(0)
    values = rng.normal(size=7)
    x = rng.choice(values, size=500)
    km = KMeans1D(8, init=init, seed=0).fit(x)
    assert np.array_equal(km.cluster_centers_[km.labels_], x)
    assert km.inertia_ == 0.0
    km = KMeans1D(7, init=init).fit(x)  # exactly k distinct values
    assert np.array_equal(km.cluster_centers_[km.labels_], x)


def test_single_value_and_fewer_points_than_clusters():
    km = KMeans1D(4, init="random").fit(np.array([0.5, 0.5, 0.5]))
    assert np.all(km.cluster_centers_ == 0.5) and np.all(km.labels_ == 0)
    km = KMeans1D(32, init="kmeans++").fit(np.array([1.0, -2.0, 3.0]))
    assert np.array_equal(km.cluster_centers_[km.labels_], [1.0, -2.0, 3.0])


def test_linear_and_density_inits():
    x = _data("laplace", 1001, 2)
    lin = init_centroids(x, 5, "linear")
    assert lin[0] == x.min() and lin[-1] == x.max()
    assert np.allclose(np.diff(lin), (x.max() - x.min()) / 4)
    dens = init_centroids(x, 4, "density")
    assert np.allclose(dens, np.quantile(x, [0.125, 0.375, 0.625, 0.875]))
    # Density puts more centroids where the weights are: the middle gap is the smallest.
    lin4 = init_centroids(x, 4, "linear")
    assert np.diff(dens)[1] < np.diff(lin4)[1]


def test_random_inits_are_seeded():
    x = _data("normal", 500, 0)
    for init in ("random", "kmeans++"):
        a = init_centroids(x, 8, init, seed=1)
        assert np.array_equal(a, init_centroids(x, 8, init, seed=1))
        assert not np.array_equal(a, init_centroids(x, 8, init, seed=2))
        assert np.all(np.isin(a, x))  # both pick data points


def test_stopping_rule():
    x = _data("bimodal", 4000, 3)
    km0 = KMeans1D(8, init="linear", max_iter=0).fit(x)
    assert km0.n_iter_ == 0 and np.array_equal(km0.cluster_centers_, km0.init_centers_)
    km1 = KMeans1D(8, init="linear", max_iter=1).fit(x)
    assert km1.n_iter_ == 1 and km1.inertia_ < km0.inertia_
    loose = KMeans1D(8, init="linear", tol=1e-2).fit(x)
    tight = KMeans1D(8, init="linear", tol=0, max_iter=1000).fit(x)
    assert loose.n_iter_ < tight.n_iter_
    assert tight.inertia_ <= loose.inertia_
    # At convergence (tol=0) one more Lloyd step does not move the centres.
    again = KMeans1D(8, init="linear", tol=0, max_iter=1)._lloyd(x, tight.cluster_centers_.copy())
    assert np.allclose(again, tight.cluster_centers_, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, data",
    [
        ({"n_clusters": 0}, [1.0]),
        ({"init": "bogus"}, [1.0]),
        ({"max_iter": -1}, [1.0]),
        ({"tol": float("nan")}, [1.0]),
        ({}, []),
        ({}, [[1.0, 2.0]]),
        ({}, [1.0, float("inf")]),
    ],
)
def test_bad_input(kwargs, data):
    with pytest.raises(SparsenetError):
        KMeans1D(**kwargs).fit(np.array(data))


def test_estimator_contract():
    km = KMeans1D(3, init="density", max_iter=7, tol=0.5, seed=9)
    assert vars(km) == {"n_clusters": 3, "init": "density", "max_iter": 7, "tol": 0.5, "seed": 9}
    assert km.fit(np.arange(10.0)) is km


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=40, deadline=None)
    @given(
        values=st.lists(
            st.floats(-1, 1, allow_nan=False, width=32).filter(lambda v: v != 0),
            min_size=1,
            max_size=40,
        ),
        bits=st.integers(1, 4),
        init=st.sampled_from(INITS),
    )
    def test_property_optimal_bound_and_lossless(values, bits, init):
        x = np.asarray(values, dtype=np.float64)
        k = 2**bits
        km = KMeans1D(k, init=init, seed=0).fit(x)
        opt = KMeans1D(k, init="optimal").fit(x)
        # ckwrap's dynamic program works with running sums of x and x², so its SSE carries an
        # absolute rounding error of order eps·Σx²; allow 1e-12·Σx² on top (tiny-value cases).
        assert opt.inertia_ <= km.inertia_ * (1 + 1e-12) + 1e-12 * float(x @ x)
        if len(np.unique(x)) <= k:
            assert np.array_equal(km.cluster_centers_[km.labels_], x)
