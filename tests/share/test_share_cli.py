import json

import torch

from sparsenet.checkpoint import load_model, save_model
from sparsenet.cli import main
from sparsenet.models import LeNet300


def run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_model(LeNet300(in_features=64, hidden=(32, 16)), path, metadata={"dataset": "digits"})
    return path


def test_share_finetune_info(tmp_path, capsys):
    src, out = _model_file(tmp_path), tmp_path / "s.pt"
    rc, stdout, err = run(
        capsys,
        "share",
        src,
        "--weight-bits",
        "fc=3,fc3=5",
        "--init",
        "optimal",
        "--finetune-epochs",
        "1",
        "--plots",
        tmp_path / "png",
        "--out",
        out,
        "--json",
        "--quiet",
    )
    assert rc == 0, err
    res = json.loads(stdout)
    assert set(res["accuracy"]) == {"unshared", "shared", "finetuned"}
    assert [(x["name"], x["bits"]) for x in res["layers"]] == [("fc1", 3), ("fc2", 3), ("fc3", 5)]
    assert res["total"]["storage_bits_after"] < res["total"]["storage_bits_before"]
    assert len(res["plots"]) == 3 and all(
        (tmp_path / "png" / f"hist_fc{i}.png").exists() for i in (1, 2, 3)
    )
    model, meta = load_model(out)
    assert meta["share"]["init"] == "optimal" and meta["dataset"] == "digits"
    assert len(torch.unique(model.fc1.weight)) <= 8
    rc, stdout, _ = run(capsys, "info", out, "--json")
    layers = json.loads(stdout)["layers"]
    codebooks = [t for layer in layers for t in layer["transforms"] if t["kind"] == "codebook"]
    assert [(t["bits"], t["clusters"]) for t in codebooks] == [(3, 8), (3, 8), (5, 32)]
    rc, stdout, _ = run(capsys, "info", out)
    assert "codebook(" in stdout and "bits=3" in stdout and "clusters=8" in stdout


def test_share_text_output_no_data(tmp_path, capsys):
    src = tmp_path / "m.pt"
    torch.manual_seed(0)
    save_model(LeNet300(in_features=64, hidden=(32, 16)), src)  # no data set recorded
    rc, stdout, err = run(capsys, "share", src, "--weight-bits", "fc2=2", "--out", tmp_path / "s.pt")
    assert rc == 0, err
    assert "fc2" in stdout and "fc1 " not in stdout and "total" in stdout


def test_bad_specs_exit_2_one_line(tmp_path, capsys):
    src = _model_file(tmp_path)
    for bits, needle in [
        ("fc=x", "'x'"),
        ("fc=0", "fc=0"),
        ("fc9=3", "'fc9'"),
        ("conv=8", "no layer"),
    ]:
        rc, stdout, err = run(capsys, "share", src, "--weight-bits", bits, "--out", tmp_path / "s.pt")
        assert rc == 2 and stdout == ""
        assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    rc, _, err = run(capsys, "share", src, "--init", "nope", "--out", tmp_path / "s.pt")
    assert rc == 2 and err.count("\n") == 1
    rc, _, err = run(capsys, "share", tmp_path / "missing.pt", "--out", tmp_path / "s.pt")
    assert rc == 2 and err.count("\n") == 1
    assert not (tmp_path / "s.pt").exists()
