import gzip
import struct

import numpy as np
import pytest
import torch

from sparsenet.data import (
    FASHION_MNIST_DIR,
    digits,
    fashion_mnist,
    idx_dir,
    load_dataset,
    mnist,
    read_idx,
)
from sparsenet.errors import DataError


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.tobytes()


def _write_mnist_dir(d, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 6), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 6), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in parts.items():
        raw = _idx_bytes(arr)
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (d / name).write_bytes(raw)
    return parts


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    parts = _write_mnist_dir(tmp_path, gz=gz)
    ds = idx_dir(tmp_path)
    assert ds.x_train.shape == (12, 1, 6, 6) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) >= 0 and float(ds.x_train.max()) <= 1
    expected = torch.from_numpy(parts["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.equal(ds.x_train[:, 0], expected)
    assert torch.equal(
        ds.y_test, torch.from_numpy(parts["t10k-labels-idx1-ubyte"].astype(np.int64))
    )


def test_idx_int_and_float_types(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "a").write_bytes(_idx_bytes(a))
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    f = np.linspace(0, 1, 4).astype(">f4")
    (tmp_path / "f").write_bytes(_idx_bytes(f))
    assert np.array_equal(read_idx(tmp_path / "f"), f)


def test_idx_truncated_names_file(tmp_path):
    raw = _idx_bytes(np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "t").write_bytes(raw[:-1])
    with pytest.raises(DataError, match="truncated.*expected 64"):
        read_idx(tmp_path / "t")
    (tmp_path / "x").write_bytes(raw + b"\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(tmp_path / "x")


def test_idx_bad_magic_and_short(tmp_path):
    (tmp_path / "m").write_bytes(b"\x01\x02\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="bad IDX magic"):
        read_idx(tmp_path / "m")
    (tmp_path / "s").write_bytes(b"\0\0")
    with pytest.raises(DataError, match="too short"):
        read_idx(tmp_path / "s")
    (tmp_path / "h").write_bytes(b"\0\0\x08\x03\0\0\0\x01")
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(tmp_path / "h")
    (tmp_path / "g").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "g")


def test_idx_dir_missing_file(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels"):
        idx_dir(tmp_path)


def test_idx_dir_count_mismatch(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="12 images but 3 labels"):
        idx_dir(tmp_path)


def test_digits_split():
    ds = digits()
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.num_classes == 10 and float(ds.x_train.max()) <= 1.0
    assert torch.equal(digits().y_test, ds.y_test)  # deterministic


def test_mnist_5k_split_is_stratified_and_deterministic():
    ds = mnist()
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    counts = torch.bincount(ds.y_test, minlength=10)
    assert int(counts.max() - counts.min()) <= 30  # stratified: class shares follow the full set
    assert torch.equal(mnist().y_train, ds.y_train)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_shapes():
    ds = fashion_mnist()
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.dtype == torch.int64 and ds.num_classes == 10


def test_fashion_mnist_env_dir(tmp_path, monkeypatch):
    sub = tmp_path / "fashion-mnist"
    sub.mkdir()
    _write_mnist_dir(sub)
    monkeypatch.setenv("SPARSENET_DATA", str(tmp_path))
    assert fashion_mnist().x_train.shape == (12, 1, 6, 6)


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist(tmp_path)


def test_load_dataset_unknown():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_holdout_is_stratified_deterministic_and_disjoint():
    from sparsenet.data import digits, holdout, validation_size

    data = digits()
    assert validation_size(60000, 10) == 5000 and validation_size(4000, 10) == 333
    a, b = holdout(data, 120), holdout(data, 120)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert len(a.y_test) == 120 and len(a.y_train) == len(data.y_train) - 120
    # every held-out image is a training image, and none is kept for training too
    rows = {tuple(r.tolist()) for r in data.x_train.reshape(len(data.x_train), -1)}
    kept = {tuple(r.tolist()) for r in a.x_train.reshape(len(a.x_train), -1)}
    held = [tuple(r.tolist()) for r in a.x_test.reshape(len(a.x_test), -1)]
    assert all(h in rows for h in held)
    assert sum(h in kept for h in held) <= 1  # digits has one duplicated image at most
    # stratified: each class's share within one image of the training set's
    for c in range(10):
        share = float((data.y_train == c).double().mean())
        assert abs(int((a.y_test == c).sum()) - share * 120) <= 1
    with pytest.raises(DataError, match="validation split of 5"):
        holdout(data, 5)
