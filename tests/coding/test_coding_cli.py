import json

import pytest
import torch

from sparsenet import load
from sparsenet.checkpoint import load_model, save_model
from sparsenet.cli import main
from sparsenet.coding import read_snn
from sparsenet.coding.save import DEFAULT_BITS
from sparsenet.training import evaluate


@pytest.fixture()
def shared_pt(tmp_path, lenet300_digits):
    path = tmp_path / "m.pt"
    save_model(lenet300_digits, path, metadata={"dataset": "digits"})
    return path


def test_compress_inspect_eval_decompress(tmp_path, shared_pt, capsys, digits_data):
    out = tmp_path / "m.snn"
    assert main(["compress", str(shared_pt), "--coder", "ans", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["coder"] == "ans" and rep["total"]["file_bytes"] == out.stat().st_size
    assert read_snn(out).metadata["dataset"] == "digits"

    assert main(["inspect", str(out), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert inspected["total"] == rep["total"]
    assert main(["inspect", str(out)]) == 0
    assert "fc1" in capsys.readouterr().out

    # The model is already pruned and shared, so the .snn is lossless: its accuracy is the
    # source .pt's, exactly.
    orig, _ = load_model(shared_pt)
    reference = evaluate(orig, digits_data.test)["accuracy"]
    assert main(["eval", str(out), "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)
    assert acc["dataset"] == "digits" and acc["test_accuracy"] == reference
    assert main(["eval", str(shared_pt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == reference

    pt = tmp_path / "back.pt"
    assert main(["decompress", str(out), "--out", str(pt), "--quiet"]) == 0
    back, meta = load_model(pt)
    x = digits_data.x_test[:50]
    with torch.no_grad():
        assert torch.equal(back(x), orig(x))
    assert meta["dataset"] == "digits"


def test_compress_unshared_model_shares_it_first(tmp_path, capsys):
    from sparsenet.models import build_model

    pt = tmp_path / "dense.pt"
    save_model(build_model("lenet300", seed=0, in_features=64), pt)
    out = tmp_path / "x.snn"
    assert main(["compress", str(pt), "--out", str(out), "--quiet"]) == 0
    loaded = load(out)
    for name in ("fc1", "fc2", "fc3"):  # shared at the default widths: few distinct weights
        bits = DEFAULT_BITS["fc"]
        assert len(torch.unique(getattr(loaded, name).weight.detach())) <= 2**bits, name


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["compress", "{pt}", "--weight-bits", "fc=99", "--out", "{snn}"], "1..15"),
        (["compress", "{pt}", "--weight-bits", "fc", "--out", "{snn}"], "NAME=BITS"),
        (["inspect", "{junk}"], "magic"),
        (["decompress", "{junk}", "--out", "{pt}.out.pt"], "magic"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, shared_pt, capsys, argv, needle):
    junk = tmp_path / "junk.snn"
    junk.write_bytes(b"not a model")
    args = [a.format(pt=shared_pt, snn=tmp_path / "o.snn", junk=junk) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_info_reads_snn(tmp_path, shared_pt, capsys):
    out = tmp_path / "m.snn"
    assert main(["compress", str(shared_pt), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file_bytes"] == out.stat().st_size and info["arch"]["name"] == "lenet300"


def test_metadata_must_be_json(tmp_path, lenet300_digits):
    from sparsenet.coding import save_snn
    from sparsenet.errors import SparsenetError

    save_snn(lenet300_digits, tmp_path / "a.snn", metadata={"acc": torch.tensor(0.5), "n": 3})
    with pytest.raises(SparsenetError, match="JSON"):
        save_snn(lenet300_digits, tmp_path / "b.snn", metadata={"loss": float("nan")})
    assert not (tmp_path / "b.snn").exists()
