"""``sparsenet prune`` / ``sensitivity`` / ``info`` on a tiny digits model."""

import json
import os

import pytest

from sparsenet.cli import main


def run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "dense.pt")
    rc = main(["train", "--model", "lenet300", "--data", "digits", "--epochs", "3",
               "--out", path, "--quiet"])
    assert rc == 0
    return path


def test_prune_oneshot_then_info_reports_layer_sparsity(model_path, tmp_path, capsys):
    out = str(tmp_path / "p.pt")
    rc, stdout, err = run(capsys, "prune", model_path, "--per-layer", "fc1=0.92,fc2=0.91,fc3=0.74",
                          "--out", out, "--json", "--quiet")
    assert rc == 0, err
    res = json.loads(stdout)
    sp = {r["name"]: r["sparsity"] for r in res["layers"]}
    assert sp == pytest.approx({"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}, abs=1e-3)
    assert 0 <= res["test_accuracy"] <= 1 and res["test_accuracy_before"] >= res["test_accuracy"] - 0.5
    rc, stdout, _ = run(capsys, "info", out, "--json")
    info = json.loads(stdout)
    dens = {layer["name"]: layer["density"] for layer in info["layers"]}
    assert dens == pytest.approx({"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}, abs=1e-3)
    assert all(layer["transforms"][0]["kind"] == "mask" for layer in info["layers"])
    assert info["metadata"]["pruning"]["method"] == "magnitude"


def test_prune_obd_iterative_and_bake(model_path, tmp_path, capsys):
    out = str(tmp_path / "p.pt")
    rc, stdout, err = run(capsys, "prune", model_path, "--method", "obd", "--sparsity", "0.8",
                          "--iterative", "2", "--retrain-epochs", "1", "--out", out, "--json",
                          "--quiet", "--bake")
    assert rc == 0, err
    res = json.loads(stdout)
    assert len(res["rounds"]) == 2 and res["sparsity"] == pytest.approx(0.8, abs=1e-4)
    rc, stdout, _ = run(capsys, "info", out, "--json")
    info = json.loads(stdout)
    assert info["density"] == pytest.approx(0.2, abs=1e-4)
    assert all(not layer["transforms"] for layer in info["layers"])  # baked: plain tensors


def test_prune_gradual_and_quality(model_path, tmp_path, capsys):
    rc, stdout, err = run(capsys, "prune", model_path, "--sparsity", "0.7", "--gradual", "1",
                          "--out", str(tmp_path / "g.pt"), "--json", "--quiet")
    assert rc == 0, err
    assert json.loads(stdout)["sparsity"] == pytest.approx(0.7, abs=1e-4)
    rc, stdout, err = run(capsys, "prune", model_path, "--quality", "1.0",
                          "--out", str(tmp_path / "q.pt"), "--json", "--quiet")
    assert rc == 0, err
    assert 0.3 < json.loads(stdout)["sparsity"] < 0.9


def test_sensitivity_writes_json_and_png(model_path, tmp_path, capsys):
    out = tmp_path / "sens"
    rc, stdout, err = run(capsys, "sensitivity", model_path, "--out", str(out),
                          "--sparsities", "0,0.5,0.9", "--json", "--quiet")
    assert rc == 0, err
    res = json.loads(stdout)
    assert set(res["layers"]) == {"fc1", "fc2", "fc3"}
    assert json.loads((out / "sensitivity.json").read_text())["sparsities"] == [0, 0.5, 0.9]
    assert os.path.getsize(out / "sensitivity.png") > 1000


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--per-layer", "fc1=abc"], "'abc' of 'fc1' is not valid"),
        (["--per-layer", "fc9=0.5"], "unknown layer 'fc9'"),
        (["--per-layer", "fc1=1.5"], "bad sparsity 1.5"),
        (["--per-layer", "fc1"], "not of the form"),
        (["--sparsity", "1.2"], "'1.2' is not a fraction"),
        (["--sparsity", "0.5", "--quality", "1"], "not allowed with"),
        (["--quality", "1", "--method", "obd"], "applies to --method magnitude"),
        (["--sparsity", "0.5", "--method", "l1"], "invalid choice"),
    ],
)
def test_bad_specs_exit_2_one_line(model_path, tmp_path, capsys, extra, fragment):
    rc, _, err = run(capsys, "prune", model_path, *extra, "--out", str(tmp_path / "x.pt"))
    assert rc == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_bad_sensitivity_grid(model_path, tmp_path, capsys):
    rc, _, err = run(capsys, "sensitivity", model_path, "--sparsities", "0.5,x",
                     "--out", str(tmp_path / "s"))
    assert rc == 2 and "'x' is not a number" in err and len(err.strip().splitlines()) == 1
