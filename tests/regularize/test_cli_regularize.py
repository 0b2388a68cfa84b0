import json

import pytest

from sparsenet.checkpoint import load_model
from sparsenet.cli import main
from sparsenet.regularize import TruncatedSigmoid


def run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


TRAIN = ["train", "--model", "lenet300", "--data", "digits", "--epochs", "1", "--quiet"]


def test_train_with_penalties_and_activation(tmp_path, capsys):
    out_path = str(tmp_path / "m.pt")
    rc, out, err = run(
        capsys,
        *TRAIN,
        "--out",
        out_path,
        "--json",
        "--l1",
        "1e-5",
        "--l2",
        "5e-4@fc1,fc2",
        "--group-lasso",
        "1e-4",
        "--act-penalty",
        "log1p:1e-4@fc1,fc2",
        "--act-penalty",
        "kl:1e-3:0.1@fc1",
        "--activation",
        "truncated-sigmoid:0.1",
    )
    assert rc == 0, err
    model, meta = load_model(out_path)
    assert isinstance(model.relu1, TruncatedSigmoid) and model.relu1.tau == 0.1
    reg = meta["regularize"]
    assert reg["activation"] == "truncated-sigmoid:0.1"
    assert reg["l2"] == {"lam": 5e-4, "layers": ["fc1", "fc2"], "include_bias": False}
    assert [a["kind"] for a in reg["activation_penalties"]] == ["log1p", "kl"]
    hist = meta["history"][0]
    for key in ("penalty_l1", "penalty_l2", "penalty_group_lasso", "penalty_act_log1p"):
        assert hist[key] > 0, key

    rc, out, err = run(capsys, "info", out_path, "--data", "digits", "--eps", "1e-3", "--json")
    assert rc == 0, err
    info = json.loads(out)
    act = info["activation_sparsity"]
    assert act["dataset"] == "digits" and act["samples"] == 360
    assert set(act["layers"]) == {"fc1", "fc2"} and 0 <= act["total"]["sparsity"] <= 1
    assert info["weight_sparsity"]["eps"] == 1e-3
    rc, out, _ = run(capsys, "info", out_path, "--data", "digits", "--samples", "50")
    assert rc == 0 and "activation sparsity over 50 samples" in out and "relu1" in out


@pytest.mark.parametrize(
    "flag,value,form",
    [
        ("--l1", "lots", "LAMBDA[@LAYER,...]"),
        ("--group-lasso", "-1", "LAMBDA[@LAYER,...]"),
        ("--act-penalty", "log1p", "KIND:LAMBDA[:RHO][@LAYER,...]"),
        ("--act-penalty", "entropy:1e-4", "KIND:LAMBDA[:RHO][@LAYER,...]"),
        ("--activation", "truncated-sigmoid", "KIND:TAU[@LAYER,...]"),
        ("--activation", "truncated-sigmoid:2", "KIND:TAU[@LAYER,...]"),
    ],
)
def test_malformed_spec_exit_2_one_line(tmp_path, capsys, flag, value, form):
    rc, out, err = run(capsys, *TRAIN, "--out", str(tmp_path / "m.pt"), flag, value)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and form in lines[0] and repr(value) in lines[0]
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "flag,value,fragment",
    [
        ("--l1", "1e-5@fc9", "unknown weight layer(s) ['fc9']"),
        ("--act-penalty", "l1:1e-4@conv1", "unknown layer(s) for activations ['conv1']"),
        ("--activation", "shifted-relu:0.1@fc3", "'fc3' is not followed by an activation"),
    ],
)
def test_unknown_layer_exit_2_one_line(tmp_path, capsys, flag, value, fragment):
    rc, out, err = run(capsys, *TRAIN, "--out", str(tmp_path / "m.pt"), flag, value)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "m.pt").exists()
