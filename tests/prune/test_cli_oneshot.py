"""``sparsenet prune --method sparsegpt/wanda/obs --pattern N:M`` on a tiny digits model."""

import json

import pytest

from sparsenet.cli import main
from sparsenet.prune import Pattern, get_mask, satisfies


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


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_prune_calibrated_with_a_pattern_then_info_reports_it(model_path, tmp_path, capsys, method):
    out = str(tmp_path / "p.pt")
    rc, stdout, err = run(capsys, "prune", model_path, "--method", method, "--pattern", "2:4",
                          "--calibration", "200", "--data", "digits", "--out", out, "--json",
                          "--quiet")
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["sparsity"] == pytest.approx(0.5, abs=1e-4) and res["pattern"] == "2:4"
    assert res["calibration"] == 200 and res["method"] == method
    rc, stdout, _ = run(capsys, "info", out, "--json")
    info = json.loads(stdout)
    assert all(layer["transforms"][0].get("pattern") == "2:4" for layer in info["layers"])
    from sparsenet.checkpoint import load_model

    model, meta = load_model(out)
    assert meta["pruning"]["pattern"] == "2:4"
    assert satisfies(get_mask(model.fc1), Pattern(2, 4))


def test_prune_sparsegpt_sparsity_and_errors(model_path, tmp_path, capsys):
    out = str(tmp_path / "p.pt")
    rc, stdout, err = run(capsys, "prune", model_path, "--method", "sparsegpt", "--sparsity", "0.9",
                          "--blocksize", "16", "--damp", "0.05", "--out", out, "--json", "--quiet")
    assert rc == 0, err
    assert json.loads(stdout)["sparsity"] == pytest.approx(0.9, abs=1e-4)
    for argv, message in [
        (["--pattern", "4:2"], "bad pattern '4:2'"),
        (["--pattern", "2:4", "--sparsity", "0.3"], "at least 0.5"),
        ([], "give one pruning target"),
        (["--pattern", "2:4", "--quality", "1"], "applies to --method magnitude"),
    ]:
        rc, _, err = run(capsys, "prune", model_path, "--method", "sparsegpt", *argv, "--out", out)
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)


def test_sensitivity_with_sparsegpt(model_path, tmp_path, capsys):
    rc, stdout, err = run(capsys, "sensitivity", model_path, "--method", "sparsegpt",
                          "--sparsities", "0,0.5,0.9", "--calibration", "128", "--limit", "200",
                          "--out", str(tmp_path / "s"), "--json", "--quiet")
    assert rc == 0, err
    res = json.loads(stdout)
    assert set(res["layers"]) == {"fc1", "fc2", "fc3"}
    assert res["layers"]["fc1"]["accuracy"][0] == res["dense"]["accuracy"]
