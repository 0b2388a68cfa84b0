"""DeepSC / DictionaryLearner / SparseCoder save/load without pickle (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from sparsenet.errors import CorruptFileError
from sparsenet.sparse_coding import DeepSC, DictionaryLearner, SparseCoder


def test_estimators_round_trip_in_a_fresh_process(tmp_path):
    rng = np.random.RandomState(0)
    x = rng.randn(60, 12)
    dl = DictionaryLearner(n_components=6, max_iter=2, random_state=0).fit(x)
    sc = SparseCoder(dictionary=dl.components_).fit(x)
    dl.save(tmp_path / "dl.npz")
    sc.save(tmp_path / "sc.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", np.stack([dl.transform(x), sc.transform(x)]))
    code = (
        "import sys, numpy as np\n"
        "from sparsenet.sparse_coding import DictionaryLearner, SparseCoder\n"
        "d = sys.argv[1]; x = np.load(d + '/x.npy')\n"
        "got = np.stack([DictionaryLearner.load(d + '/dl.npz').transform(x),\n"
        "                SparseCoder.load(d + '/sc.npz').transform(x)])\n"
        "sys.exit(0 if np.array_equal(got, np.load(d + '/want.npy')) else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 0


def test_deepsc_round_trip_in_a_fresh_process(tmp_path, digits_data, loads_the_same):
    x, y = digits_data.x_train[:200], digits_data.y_train[:200].numpy()
    m = DeepSC(n_components=(8,), patch_size=(3,), patch_stride=(1,), dict_images=100,
               encode_iter=2, drlim=False).fit(x, y)
    assert loads_the_same(m, digits_data.x_test[:40].numpy(), tmp_path)
    with zipfile.ZipFile(tmp_path / "m.npz") as z:  # arrays and JSON only
        assert all(n.endswith(".npy") for n in z.namelist())


def _rewrite_state(path, fn):
    with np.load(path, allow_pickle=False) as a:
        arrays = {k: a[k] for k in a.files}
    doc = json.loads(arrays["__state__"].tobytes())
    fn(doc)
    arrays["__state__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_hostile_estimator_files(tmp_path):
    x = np.random.RandomState(1).randn(30, 5)
    sc = SparseCoder(dictionary=x[:4]).fit(x)
    sc.save(tmp_path / "sc.npz")
    bad = tmp_path / "bad.npz"
    # a class outside the closed set
    bad.write_bytes((tmp_path / "sc.npz").read_bytes())
    _rewrite_state(bad, lambda d: d["root"].update({"__object__": "Popen"}))
    with pytest.raises(CorruptFileError, match="not one sparsenet rebuilds"):
        SparseCoder.load(bad)
    # an object array (would need pickle)
    np.savez(bad, __state__=np.frombuffer(b"{}", dtype=np.uint8), a0=np.array([print]))
    with pytest.raises(CorruptFileError):
        SparseCoder.load(bad)
    for junk in (b"", b"PK\x03\x04garbage", b"\x00" * 100):
        bad.write_bytes(junk)
        with pytest.raises(CorruptFileError):
            SparseCoder.load(bad)


def test_tensors_keep_their_memory_layout(tmp_path):
    # DrLIM's projection is column-major; a row-major copy after loading made its matmul
    # round differently (~1e-6 in DeepSC's decision values)
    import torch

    from sparsenet.sparse_coding.drlim import DrLIM
    from sparsenet.sparse_coding.persist import load_estimator, save_estimator

    maps = torch.rand(6, 4, 4, 10, generator=torch.Generator().manual_seed(0))
    r = DrLIM(n_components=3, n_iter=5).fit(maps)
    r.components_ = r.components_.t().contiguous().t()  # column-major, whatever fit made
    save_estimator(r, tmp_path / "r.npz")
    back = load_estimator(tmp_path / "r.npz", DrLIM)
    assert back.components_.stride() == r.components_.stride() == (1, 3)
    assert torch.equal(back.components_, r.components_)
    assert torch.equal(back.transform(maps), r.transform(maps))
