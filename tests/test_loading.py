"""sparsenet.load: one loader for .snn, .pt and .pt2, metadata returned or on the model."""

import pytest
import torch

import sparsenet
from sparsenet.checkpoint import save_model
from sparsenet.coding import save_snn
from sparsenet.errors import CheckpointError, CorruptFileError, SparsenetError
from sparsenet.inference import load_snn
from sparsenet.loading import META_ATTR, file_kind
from sparsenet.prune import prune
from sparsenet.runtime.layers import SparseLinear


@pytest.fixture
def lenet300_digits() -> torch.nn.Module:
    return prune(sparsenet.build_model("lenet300", seed=0, in_features=64), sparsity=0.9)


@pytest.fixture
def files(tmp_path, lenet300_digits):
    pt, snn = tmp_path / "m.pt", tmp_path / "m.snn"
    save_model(lenet300_digits, pt, metadata={"dataset": "digits", "note": "pt"})
    save_snn(lenet300_digits, snn, metadata={"dataset": "digits", "note": "snn"})
    return pt, snn


def test_pt_and_snn_load_alike(files, lenet300_digits, digits_data):
    x = digits_data.x_test[:32]
    with torch.no_grad():
        ref = lenet300_digits.eval()(x)
    for path, note in zip(files, ("pt", "snn"), strict=True):
        model = sparsenet.load(path)
        assert not model.training
        with torch.no_grad():
            assert torch.equal(model(x), ref), path
        assert getattr(model, META_ATTR) == {"dataset": "digits", "note": note}
        again, meta = sparsenet.load(path, with_metadata=True)
        assert meta == {"dataset": "digits", "note": note}
        assert again.sparsenet_meta is meta


def test_sparse_runtime_only_for_snn(files):
    pt, snn = files
    assert isinstance(sparsenet.load(snn, runtime="sparse").fc1, SparseLinear)
    with pytest.raises(SparsenetError, match="runtime='sparse' needs a .snn"):
        sparsenet.load(pt, runtime="sparse")
    with pytest.raises(SparsenetError, match="runtime='fast'"):
        sparsenet.load(snn, runtime="fast")


def test_file_kind_reads_magic_not_just_suffix(files, tmp_path):
    pt, snn = files
    disguised = tmp_path / "model.bin"
    disguised.write_bytes(snn.read_bytes())
    assert file_kind(disguised) == "snn" and file_kind(pt) == "checkpoint"
    assert file_kind(tmp_path / "missing.snn") == "snn"
    assert file_kind(tmp_path / "x.pt2") == "pt2"
    assert isinstance(sparsenet.load(disguised), torch.nn.Module)


def test_missing_files_get_their_readers_errors(tmp_path):
    with pytest.raises(CorruptFileError):
        sparsenet.load(tmp_path / "none.snn")
    with pytest.raises(CheckpointError, match="no such file"):
        sparsenet.load(tmp_path / "none.pt")


def test_old_names_warn_and_agree(files, digits_data):
    pt, snn = files
    x = digits_data.x_test[:8]
    with pytest.warns(DeprecationWarning, match="sparsenet.load"):
        m, meta = sparsenet.load_model(pt)
    assert meta["note"] == "pt"
    with pytest.warns(DeprecationWarning, match="sparsenet.load"):
        s = load_snn(snn)
    with torch.no_grad():
        assert torch.equal(s(x), sparsenet.load(snn)(x))
        assert torch.equal(m(x), sparsenet.load(pt)(x))
