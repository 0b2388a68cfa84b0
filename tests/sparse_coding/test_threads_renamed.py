"""``n_jobs`` thread limits, and the scikit-learn parameter names (old ones deprecated)."""

from __future__ import annotations

import json
import warnings
import zipfile

import numba
import numpy as np
import pytest
import torch
from sklearn.base import clone

from sparsenet.sparse_coding import DeepSC, DictionaryLearner, SparseCoder
from sparsenet.sparse_coding._validation import InvalidInputError
from sparsenet.sparse_coding.threads import limit_threads


@numba.njit(parallel=True, cache=False)
def _thread_ids(n):
    out = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        acc = 0.0
        for j in range(20000):  # enough work that idle workers would pick up iterations
            acc += np.sqrt(j + i)
        out[i] = numba.get_thread_id() + 0 * int(acc)
    return out


def test_limit_threads_sets_every_pool_and_restores_it():
    before = numba.get_num_threads(), torch.get_num_threads()
    with limit_threads(1) as n:
        assert n == 1
        assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1
        assert set(_thread_ids(64).tolist()) == {0}  # prange really ran on one thread
        from threadpoolctl import threadpool_info

        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert (numba.get_num_threads(), torch.get_num_threads()) == before
    with limit_threads(None) as n:
        assert n is None and numba.get_num_threads() == before[0]
    with pytest.raises(InvalidInputError, match="n_jobs=0"):
        with limit_threads(0):
            pass


def test_deepsc_runs_its_kernels_with_n_jobs_threads(digits_data, monkeypatch):
    from sparsenet.sparse_coding import layer_kernel

    seen = []
    real = layer_kernel.layer_kernel

    def spy(*args, **kw):
        seen.append((numba.get_num_threads(), torch.get_num_threads()))
        return real(*args, **kw)

    monkeypatch.setattr(layer_kernel, "layer_kernel", spy)
    x = digits_data.x_train[:60]
    m = DeepSC(n_components=(6,), patch_size=3, patch_stride=1, dict_images=40, drlim=False,
               n_jobs=1)
    m.fit_features(x).transform(x)
    assert seen and set(seen) == {(1, 1)}


def test_old_names_warn_and_map_to_the_new_ones():
    with pytest.warns(DeprecationWarning, match="'n_atoms' is deprecated"):
        dl = DictionaryLearner(n_atoms=7, alpha=0.2)
    assert dl.n_components == 7 and "n_atoms" not in dl.get_params()
    assert clone(dl).n_components == 7
    with pytest.warns(DeprecationWarning, match="'positive' is deprecated"):
        sc = SparseCoder(np.eye(3), positive=True)
    assert sc.positive_code is True and "positive" not in sc.get_params()
    with pytest.warns(DeprecationWarning):
        assert DictionaryLearner().set_params(n_atoms=5).n_components == 5
    with pytest.warns(DeprecationWarning):
        m = DeepSC(n_atoms=(8, 16), n_components=32)  # the old DrLIM dimension
    assert m.n_components == (8, 16) and m.drlim_components == 32
    assert "n_atoms" not in m.get_params() and m.get_params()["drlim_components"] == 32
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_atom'"):
        DeepSC(n_atom=3)
    with warnings.catch_warnings(), pytest.raises(TypeError, match="got both"):
        warnings.simplefilter("ignore")
        DictionaryLearner(n_atoms=3, n_components=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names alone never warn
        DeepSC(n_components=(8,), drlim_components=4)
        SparseCoder(np.eye(3), positive_code=True)


def _rename_in_file(path, renames):
    """Rewrite a model file's JSON state as a file written before the rename would be."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays["__state__"].tobytes().decode())
    state = doc["root"]["state"]
    for new, old in renames.items():
        state[old] = state.pop(new)
    for gone in ("encode_method", "encode_tol", "n_jobs"):  # parameters added since
        state.pop(gone, None)
    arrays["__state__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    assert zipfile.is_zipfile(path)


def test_files_with_the_old_names_still_load(tmp_path, digits_data):
    x, y = digits_data.x_train[:150], digits_data.y_train[:150].numpy()
    m = DeepSC(n_components=(6,), patch_size=3, patch_stride=1, dict_images=60, drlim_components=5,
               drlim=False).fit(x, y)
    m.save(tmp_path / "m.npz")
    want = m.predict(x)
    # before the rename: n_atoms held the atoms and n_components the DrLIM dimension
    _rename_in_file(tmp_path / "m.npz", {"n_components": "n_atoms", "drlim_components":
                                         "n_components"})
    old = DeepSC.load(tmp_path / "m.npz")
    assert old.n_components == (6,) and old.drlim_components == 5
    assert old.encode_method == "fista" and old.n_jobs is None
    assert np.array_equal(old.predict(x), want)
    dl = DictionaryLearner(n_components=4, max_iter=1, random_state=0).fit(np.random.rand(40, 6))
    sc = SparseCoder(dl.components_, positive_code=True)
    dl.save(tmp_path / "dl.npz")
    sc.save(tmp_path / "sc.npz")
    _rename_in_file(tmp_path / "dl.npz", {"n_components": "n_atoms"})
    _rename_in_file(tmp_path / "sc.npz", {"positive_code": "positive"})
    assert DictionaryLearner.load(tmp_path / "dl.npz").get_params()["n_components"] == 4
    assert SparseCoder.load(tmp_path / "sc.npz").positive_code is True


def test_features_do_not_depend_on_the_thread_count(digits_data):
    """Images are split over numba's threads, each with its own scratch: same bits."""
    x = digits_data.x_train[:80]
    m = DeepSC(n_components=(6, 8), patch_size=(3, 2), patch_stride=1, pool_size=2,
               pool_stride=2, dict_images=60, drlim_components=4, drlim_iter=10,
               n_jobs=1).fit_features(x)
    one = m.transform(x)
    two = m.set_params(n_jobs=2, batch_size=7).transform(x)
    assert np.array_equal(one, two)
