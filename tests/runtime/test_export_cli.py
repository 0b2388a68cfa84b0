"""``sparsenet export`` (ONNX round trip through onnxruntime) and ``sparsenet bench``."""

import builtins
import json

import numpy as np
import pytest
import torch
from runtime_helpers import assert_rel_close
from test_plan import prune_share

import sparsenet
from sparsenet.cli import main
from sparsenet.coding import save_snn


@pytest.fixture(scope="module")
def snn(tmp_path_factory):
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("rt") / "lenet5.snn"
    save_snn(prune_share(sparsenet.build_model("lenet5"), 0.1), path)
    return path


def test_export_onnx_roundtrip(snn, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'sparsenet[onnx]'")
    out = tmp_path / "m.onnx"
    assert main([ "export", str(snn), "--format", "onnx", "--out", str(out), "--quiet"]) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(7, 1, 28, 28)
    got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        assert_rel_close(got, sparsenet.load(snn, runtime="sparse")(x))
        assert_rel_close(got, sparsenet.load(snn)(x))


def test_export_without_onnx_exits_2(snn, tmp_path, monkeypatch, capsys):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("no onnx", name="onnx")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert main(["export", str(snn), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'sparsenet[onnx]'" in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_bench_json(snn, capsys):
    assert main(["bench", str(snn), "--batch", "1,2", "--rounds", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["batches"]) == {"1", "2"}
    for row in r["batches"].values():
        assert {"dense", "sparse"} <= set(row)
        assert all(v["p50_us"] > 0 and v["p90_us"] >= v["p50_us"] for v in row.values())
    sp, de = r["runtimes"]["sparse"], r["runtimes"]["dense"]
    assert sp["weight_bytes"] < de["weight_bytes"] and "compiled plan" in sp["plan"]
    assert np.isclose(r["batches"]["1"]["dense"]["speedup_vs_dense"], 1.0)


def test_bench_bad_args_exit_2(snn, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", str(snn), "--batch", "0"])
    assert e.value.code == 2
    bad = tmp_path / "bad.snn"
    bad.write_bytes(snn.read_bytes()[:-5])
    assert main(["bench", str(bad)]) == 2
    assert "error" in capsys.readouterr().err


def test_info_plan_says_what_is_compiled(tmp_path, snn, capsys):
    """``info --plan`` prints the plan once; a custom model's file recording only its data
    set still gets a plan (shape from sparsenet.data.INPUT_SHAPES); bad uses exit 2."""
    assert main(["info", str(snn), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan.startswith("sparse runtime: one compiled plan of 6 steps") and "fallback" not in plan
    from test_plan import resbn

    path = tmp_path / "res.snn"
    save_snn(resbn(), path, metadata={"dataset": "digits"})  # a custom model; digits are (1, 8, 8)
    assert main(["info", str(path), "--plan"]) == 0
    out = capsys.readouterr().out
    # (1, 8, 8) from the digits data set does not fit this 3-channel model: no plan, and why
    assert "plan not built yet (no plan for input (1, 8, 8)" in out and "expected (B, 3, H, W)" in out
    assert main(["info", str(path), "--plan", "--input-shape", "3,8,8", "--json"]) == 0
    assert "+bn" in json.loads(capsys.readouterr().out)["plan"]
    assert main(["info", str(snn).replace(".snn", ".pt"), "--plan"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["info", str(snn), "--plan", "--input-shape", "0,2"])
    assert e.value.code == 2
