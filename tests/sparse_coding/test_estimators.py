import functools
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import _yield_all_checks, check_estimator

from sparsenet.sparse_coding import DictionaryLearner, SparseCoder, sparse_encode

# The coder's dictionary fixes n_features, but these checks feed X with another width. Each
# one passes when the dictionary has the width that check uses (proved below), which is how
# scikit-learn's own test suite runs its SparseCoder (per-check dictionaries).
FIXED_WIDTH_CHECKS = {
    "check_estimators_overwrite_params": 2,
    "check_estimators_fit_returns_self": 2,
    "check_readonly_memmap_input": 2,
    "check_n_features_in_after_fitting": 4,
    "check_positive_only_tag_during_fit": 4,
    "check_estimators_dtypes": 5,
    "check_dtype_object": 10,
    "check_transformers_unfitted_stateless": 5,
    "check_fit2d_1sample": 10,
    "check_fit2d_1feature": 1,
    "check_fit_idempotent": 2,
    "check_fit_check_is_fitted": 2,
    "check_n_features_in": 2,
}
WHY = "dictionary fixes n_features=3; rerun with a matching dictionary in test_sparse_coder_width_checks"
SKIPPED = {
    # the coder is stateless (nothing iterates in fit); max_iter bounds transform's solver
    "check_transformer_n_iter": "SparseCoder.fit does not iterate, so it has no n_iter_",
}
# The renamed parameters' old names (n_atoms, positive) arrive through a **deprecated
# catch-all for one release; this check passes every signature name as a keyword, the
# catch-all's own name included, and an unknown keyword raises TypeError as in any call.
RENAMED = {
    "check_do_not_raise_errors_in_init_or_set_params": (
        "passes the **deprecated catch-all's name as a keyword; unknown keywords raise"
    ),
}


def _coder(width: int) -> SparseCoder:
    rng = np.random.default_rng(width)
    return SparseCoder(dictionary=rng.normal(size=(5, width)), alpha=0.1)


def test_dictionary_learner_passes_check_estimator():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            DictionaryLearner(n_components=3, alpha=0.1, batch_size=10, max_iter=2,
                              random_state=0),
            expected_failed_checks=RENAMED, on_fail=None,
        )
    assert {r["check_name"] for r in results if r["status"] == "failed"} == set()


def test_sparse_coder_check_estimator():
    expected = {name: WHY for name in FIXED_WIDTH_CHECKS} | SKIPPED | RENAMED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(_coder(3), expected_failed_checks=expected)


def test_sparse_coder_width_checks():
    ran = set()
    for check in _yield_all_checks(_coder(3), legacy=True):
        name = check.func.__name__ if isinstance(check, functools.partial) else check.__name__
        if name in FIXED_WIDTH_CHECKS:
            check("SparseCoder", _coder(FIXED_WIDTH_CHECKS[name]))
            ran.add(name)
    assert ran == set(FIXED_WIDTH_CHECKS)


def test_params_round_trip_and_transform(digit_problem):
    X, D = digit_problem
    coder = SparseCoder(D, alpha=0.2, method="cd", tol=1e-8)
    assert coder.get_params()["alpha"] == 0.2
    coder.set_params(alpha=0.1)
    np.testing.assert_array_equal(coder.fit(X).transform(X),
                                  sparse_encode(X, D, 0.1, "cd", tol=1e-8))
    learner = DictionaryLearner(n_components=8, alpha=0.1, max_iter=1, random_state=0)
    twin = clone(learner).set_params(n_components=8)
    assert twin.get_params() == learner.get_params()
    a = learner.fit(X).transform(X)
    b = twin.fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(X), 8)


def test_bad_parameters_raise_value_error(digit_problem):
    X, D = digit_problem
    with pytest.raises(ValueError, match="alpha"):
        DictionaryLearner(alpha=0).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        DictionaryLearner(n_components=0).fit(X)
    with pytest.raises(ValueError, match="dict_init"):
        DictionaryLearner(n_components=4, dict_init=np.ones((3, 64))).fit(X)
    with pytest.raises(ValueError, match="method"):
        SparseCoder(D, method="lars").transform(X)
    with pytest.raises(ValueError, match="features"):
        SparseCoder(D[:, :10]).fit(X)
