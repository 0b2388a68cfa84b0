"""Regression tests for issue 17 (hostile and careless use), CLI items, one test per item."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hostile_helpers import assert_one_line_error, cli, digits_checkpoint, tree

from sparsenet.checkpoint import save_model
from sparsenet.cli import error_line
from sparsenet.coding import save_snn


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_data):
    """d.pt: lenet300 on digits (1 epoch); s.pt: the same shared at fc=5; d.snn."""
    from sparsenet.share import share_weights

    root = tmp_path_factory.mktemp("hostile")
    d = digits_checkpoint(root / "d.pt", digits_data)
    from sparsenet.checkpoint import load_model

    model, meta = load_model(d)
    shared = share_weights(model, weight_bits={"conv": 8, "fc": 5})
    save_model(shared, root / "s.pt", metadata=meta)
    save_snn(shared, root / "d.snn", metadata={"dataset": "digits"})
    return root


def test_item_03_output_is_input_or_wrong_extension(work, capsys):
    before = tree(work)
    for argv, frag in [
        (["compress", work / "d.pt", "--out", work / "d.pt"], "is the input"),
        (["compress", work / "s.pt", "--out", work / "x.pt"], "a .pt name is for a checkpoint"),
        (["decompress", work / "d.snn", "--out", work / "d.snn"], "is the input"),
        (["decompress", work / "d.snn", "--out", work / "y.snn"], "a .snn name"),
        (["train", "--model", "lenet300", "--data", "digits", "--out", work / "z.snn"],
         "a .snn name"),
    ]:
        rc, _, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, frag)
    assert tree(work) == before
    assert (work / "d.pt").read_bytes()[:2] == b"PK"  # still a checkpoint


def test_item_07_model_does_not_fit_data(work, capsys):
    for argv in (["eval", work / "d.pt", "--data", "mnist"],
                 ["eval", work / "d.snn", "--data", "mnist"],
                 ["prune", work / "d.pt", "--sparsity", "0.5", "--data", "mnist",
                  "--out", work / "p.pt"],
                 ["sensitivity", work / "d.pt", "--data", "mnist", "--out", work / "sdir"],
                 ["share", work / "d.pt", "--data", "mnist", "--out", work / "q.pt"],
                 ["factorize", work / "d.pt", "--rank", "4", "--data", "mnist",
                  "--out", work / "f.pt"]):
        rc, _, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, "does not fit data set 'mnist'")
    assert not any((work / n).exists() for n in ("p.pt", "sdir", "q.pt", "f.pt"))


def test_item_08_output_under_a_file(work, capsys):
    for argv in (["train", "--model", "lenet300", "--data", "digits", "--out", work / "d.pt/x.pt"],
                 ["prune", work / "d.pt", "--sparsity", "0.5", "--out", work / "d.pt/x.pt"],
                 ["compress", work / "s.pt", "--out", work / "d.pt/x.snn"],
                 ["decompress", work / "d.snn", "--out", work / "d.pt/x.pt"],
                 ["report", work / "d.pt"]):
        rc, _, err = cli(capsys, *argv)
        assert_one_line_error(rc, err)
        assert "d.pt" in err


def test_item_13_broken_pipe_is_quiet(work):
    # `sparsenet info x.pt | head -1`: the reader closes the pipe after one line.
    code = ("import sys; from sparsenet.cli import main; sys.exit(main(['info', sys.argv[1]]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(work / "d.pt")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: every write raises EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_item_14_deepsc_atoms_bounded(tmp_path, capsys):
    rc, _, err = cli(capsys, "deepsc", "--atoms", "100000000", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "at most 4096 atoms")
    assert not (tmp_path / "o").exists()


def test_item_17_bits_on_shared_model_refused(work, capsys):
    rc, _, err = cli(capsys, "compress", work / "s.pt", "--weight-bits", "fc=2", "--out", work / "t.snn")
    assert_one_line_error(rc, err, "already shared with 5 bits")
    assert not (work / "t.snn").exists()
    rc, _, err = cli(capsys, "compress", work / "s.pt", "--out", work / "t.snn", "-q")
    assert rc == 0, err


def test_item_20_samples_without_data(work, capsys):
    rc, _, err = cli(capsys, "info", work / "d.pt", "--samples", "5")
    assert_one_line_error(rc, err, "--samples N needs --data")


def test_item_21_error_names_the_users_path(tmp_path, capsys):
    from sparsenet.io import atomic_write_bytes

    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        atomic_write_bytes(tmp_path / "dir.pt", b"x")
    assert error_line(exc.value).startswith(str(tmp_path / "dir.pt"))
    assert ".tmp" not in error_line(exc.value)
    rc, _, err = cli(capsys, "train", "--model", "lenet300", "--data", "digits",
                     "--out", tmp_path / "dir.pt")
    assert_one_line_error(rc, err, str(tmp_path / "dir.pt"))
    assert ".tmp" not in err


def test_item_22_pickle_message(tmp_path, capsys):
    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"a": print}))
    torch.save({"a": print}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        rc, _, err = cli(capsys, "info", tmp_path / name)
        assert_one_line_error(rc, err, "not a sparsenet checkpoint")
        assert "never" in err and "weights_only set to False" not in err


def test_item_23_json_nan_is_null(capsys):
    import argparse

    from sparsenet.cli.common import emit

    emit(argparse.Namespace(json=True), {"loss": float("nan"), "x": [float("inf"), 1.5]}, "")
    out = capsys.readouterr().out
    assert json.loads(out) == {"loss": None, "x": [None, 1.5]}


def test_item_23_run_check_json(tmp_path, capsys):
    (tmp_path / "r.toml").write_text('data = "digits"\n[[stages]]\nprune = { sparsity = 0.5 }\n')
    rc, out, err = cli(capsys, "run", tmp_path / "r.toml", "--check", "--json")
    assert rc == 0, err
    assert json.loads(out)["stages"][0]["prune"]["sparsity"] == 0.5


def test_item_24_resume_mismatch_one_line(tmp_path, capsys, digits_data):
    digits_checkpoint(tmp_path / "r.pt", digits_data)
    from sparsenet.checkpoint import load_checkpoint

    # give it a training state, as `sparsenet train` does after every epoch
    from sparsenet.models import model_for_dataset
    from sparsenet.training import TrainConfig, fit

    m = model_for_dataset("lenet300", digits_data.input_shape, 10, seed=0)
    fit(m, digits_data.train, TrainConfig(epochs=1, quiet=True), checkpoint=tmp_path / "r.pt")
    assert load_checkpoint(tmp_path / "r.pt").get("train_state")
    rc, _, err = cli(capsys, "train", "--model", "lenet5", "--data", "digits", "--epochs", "2",
                     "--resume", "--out", tmp_path / "r.pt", "-q")
    assert_one_line_error(rc, err, "cannot resume")


def test_item_25_share_shared_message(work, capsys):
    rc, _, err = cli(capsys, "share", work / "s.pt", "--out", work / "s2.pt")
    assert_one_line_error(rc, err, "already weight-shared")
    assert "bake(" not in err
