import numpy as np
import torch

from sparsenet.sparse_coding import (
    DictionaryLearner,
    OnlineState,
    dictionary_objective,
    online_step,
    update_atoms,
)


def _surrogate(state: OnlineState) -> float:
    D = state.D
    return float(0.5 * torch.trace(D @ D.T @ state.A) - torch.trace(D @ state.B.T))


def test_atoms_have_norm_at_most_one_after_every_step(digit_problem):
    X, _ = digit_problem
    X = X * 3.0  # large samples would push unconstrained atoms above norm 1
    learner = DictionaryLearner(n_components=20, alpha=0.3, random_state=0)
    for start in range(0, len(X), 50):
        learner.partial_fit(X[start : start + 50])
        assert np.linalg.norm(learner.components_, axis=1).max() <= 1 + 1e-12
    learner.fit(X)
    assert np.linalg.norm(learner.components_, axis=1).max() <= 1 + 1e-12


def test_learning_lowers_the_objective(digit_problem):
    X, D0 = digit_problem
    D0 = D0[:30]
    learner = DictionaryLearner(n_components=30, alpha=0.1, batch_size=50, max_iter=3,
                                dict_init=D0, random_state=0).fit(X)
    x = torch.from_numpy(X)
    before = dictionary_objective(x, torch.from_numpy(D0), 0.1)
    after = dictionary_objective(x, torch.from_numpy(learner.components_), 0.1)
    assert after < 0.9 * before


def test_partial_fit_equals_fit_over_the_same_batches(digit_problem):
    X, D0 = digit_problem
    D0 = D0[:25]
    kw = dict(n_components=25, alpha=0.1, batch_size=40, dict_init=D0, random_state=0)
    full = DictionaryLearner(max_iter=1, shuffle=False, **kw).fit(X)
    inc = DictionaryLearner(**kw)
    for start in range(0, len(X), 40):
        inc.partial_fit(X[start : start + 40])
    np.testing.assert_array_equal(full.components_, inc.components_)
    assert full.n_steps_ == inc.n_steps_ == 8


def test_block_coordinate_update_never_raises_the_surrogate(digit_problem):
    X, D0 = digit_problem
    state = OnlineState.start(torch.from_numpy(D0[:40]).clone())
    x = torch.from_numpy(X)
    for start in range(0, 200, 50):
        online_step(state, x[start : start + 50], 0.1)
    before = _surrogate(state)
    update_atoms(state)
    mid = _surrogate(state)
    update_atoms(state)
    assert mid <= before + 1e-12 and _surrogate(state) <= mid + 1e-12


def test_dead_atoms_are_resampled(digit_problem):
    X, D0 = digit_problem
    # data live in the first 60 coordinates; atom 0 points along coordinate 63 and is never used
    X = X.copy()
    X[:, 60:] = 0
    D0 = D0[:10].copy()
    D0[0] = 0
    D0[0, 63] = 1.0
    learner = DictionaryLearner(n_components=10, alpha=0.1, batch_size=50, max_iter=1,
                                dict_init=D0, random_state=0, shuffle=False).fit(X)
    assert learner.n_resampled_ >= 1
    assert abs(learner.components_[0, 63]) < 0.05  # replaced by (a sample from) the data
    assert np.linalg.norm(learner.components_[0]) > 0.5
    off = DictionaryLearner(n_components=10, alpha=0.1, batch_size=50, max_iter=1, dict_init=D0,
                            random_state=0, shuffle=False, resample_dead=False).fit(X)
    assert off.n_resampled_ == 0 and off.components_[0, 63] == 1.0


def test_torch_input_and_float32(digit_problem):
    X, _ = digit_problem
    x = torch.from_numpy(X).float()
    learner = DictionaryLearner(n_components=16, alpha=0.1, max_iter=1, random_state=0).fit(x)
    assert learner.components_.dtype == np.float32
    codes = learner.transform(x)
    assert isinstance(codes, torch.Tensor) and codes.shape == (len(X), 16)
