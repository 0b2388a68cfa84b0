"""Files of custom models load in a process that never imported their class; old files load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from graph_models import TinyViT

import sparsenet
from sparsenet.prune import prune
from sparsenet.share import share_weights

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _fresh_process_logits(tmp_path: Path, path: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Load ``path`` with sparsenet.load in a subprocess whose sys.path lacks tests/graph."""
    torch.save(x, tmp_path / "x.pt")
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import torch
        import sparsenet
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        dense = sparsenet.load({str(path)!r})
        sparse = sparsenet.load({str(path)!r}, runtime="sparse")
        assert "graph_models" not in sys.modules
        assert not any("tests" in p for p in sys.path), sys.path
        with torch.no_grad():
            out = {{"dense": dense(x), "sparse": sparse(x), "type": torch.tensor(0)}}
        torch.save(out, {str(tmp_path / "out.pt")!r})
        print(type(dense).__name__, type(sparse.head).__name__)
        """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["GraphModel", "SparseLinear"]
    return torch.load(tmp_path / "out.pt", weights_only=True)


def test_custom_module_train_prune_share_encode_loads_in_a_fresh_process(tmp_path, digits_data):
    torch.manual_seed(0)
    m = TinyViT()
    x_tr, y_tr = digits_data.train
    sparsenet.fit(m, (x_tr[:256], y_tr[:256]), sparsenet.TrainConfig(epochs=1, quiet=True))
    m = share_weights(prune(m, sparsity=0.7), weight_bits="conv=5,fc=4")
    sparsenet.save_snn(m, tmp_path / "vit.snn")
    m.eval()
    x = digits_data.test[0][:64]
    with torch.no_grad():
        ref = m(x)
    got = _fresh_process_logits(tmp_path, tmp_path / "vit.snn", x)
    assert torch.equal(got["dense"], ref)
    assert torch.allclose(got["sparse"], ref, atol=1e-5, rtol=0)
    # and model= still loads into an instance of the user's class
    mine = sparsenet.load(tmp_path / "vit.snn", model=TinyViT())
    with torch.no_grad():  # (MultiheadAttention's fast path, as for ref)
        assert type(mine) is TinyViT and torch.equal(mine(x), ref)


def test_custom_checkpoint_loads_without_its_class(tmp_path, digits_data):
    torch.manual_seed(0)
    m = prune(TinyViT(), sparsity=0.5)
    sparsenet.save_model(m, tmp_path / "m.pt", metadata={"k": 1})
    back, meta = sparsenet.load(tmp_path / "m.pt", with_metadata=True)
    assert meta == {"k": 1}
    x = digits_data.test[0][:16]
    assert torch.equal(back(x), m.eval()(x))
    # the rebuilt model is prunable and saveable again: a second generation file
    sparsenet.save_snn(share_weights(back, weight_bits="conv=4,fc=4"), tmp_path / "m.snn")
    assert torch.equal(sparsenet.load(tmp_path / "m.snn")(x), back(x))


@pytest.mark.slow
def test_compress_pipeline_on_a_custom_module(tmp_path, digits_data):
    recipe = {"seed": 0, "stages": [
        {"train": {"epochs": 1, "batch_size": 64}},
        {"prune": {"method": "magnitude", "sparsity": 0.5, "iterations": 1, "retrain_epochs": 1}},
        {"share": {"weight_bits": {"conv": 5, "fc": 4}, "finetune_epochs": 0}},
        {"encode": {"coder": "huffman"}},
    ]}
    torch.manual_seed(0)
    model, _ = sparsenet.compress(TinyViT(), digits_data, recipe, run_dir=tmp_path / "run",
                                  quiet=True, report=False)
    x = digits_data.test[0][:64]
    with torch.no_grad():
        ref = model(x)
    got = _fresh_process_logits(tmp_path, tmp_path / "run" / "model.snn", x)
    assert torch.equal(got["dense"], ref)


# ---------------------------------------------------------------- files already written
def test_old_files_still_load_with_the_same_logits():
    ref = torch.load(FIXTURES / "lenet300-v1-logits.pt", weights_only=True)
    pt, meta = sparsenet.load(FIXTURES / "lenet300-v1.pt", with_metadata=True)
    assert meta == {"dataset": "digits", "note": "fixture"}
    # The logits were written on another machine: torch's CPU kernels differ by ISA (AVX2 /
    # AVX-512) in summation order, 1.5e-8 here, so "the same" is to float32 rounding.
    with torch.no_grad():
        torch.testing.assert_close(pt(ref["x"]), ref["pt"], rtol=1e-6, atol=1e-7)
        got = sparsenet.load(FIXTURES / "lenet300-v1.snn")(ref["x"])
        torch.testing.assert_close(got, ref["snn"], rtol=1e-6, atol=1e-7)


def test_registry_model_files_are_byte_identical_to_before(tmp_path):
    """The fixture's recipe, rerun with today's code, writes the committed bytes."""
    m = sparsenet.build_model("lenet300", seed=0, in_features=64, hidden=[32, 16], num_classes=10)
    m = share_weights(prune(m, sparsity=0.9), weight_bits="fc=3")
    sparsenet.save_snn(m, tmp_path / "a.snn", metadata={"dataset": "digits"})
    assert (tmp_path / "a.snn").read_bytes() == (FIXTURES / "lenet300-v1.snn").read_bytes()
    header = sparsenet.coding.read_snn(tmp_path / "a.snn").header
    assert set(header["arch"]) == {"name", "kwargs"}
