"""``torchrun -m sparsenet compress --recipe ...`` with 2 gloo ranks against 1 process."""

import json
import struct

import numpy as np
import pytest
import torch

from sparsenet.checkpoint import load_model
from sparsenet.cli import main as cli_main
from sparsenet.data import digits

from ._launch import torchrun

RECIPE = """
name = "tiny-dc"
seed = 5

[[stages]]
train = { epochs = 2, batch_size = 64, lr = 0.05 }

[[stages]]
[stages.prune]
method = "obd"
sparsity = 0.8
iterations = 1
retrain_epochs = 1
sensitivity = true

[[stages]]
[stages.share]
weight_bits = { fc = 4 }
finetune_epochs = 1

[[stages]]
encode = { coder = "huffman" }
"""


def _write_idx(path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())


def _even_digits_dir(d):
    """Digits as IDX files with an even training set, so the sampler pads nothing."""
    ds = digits()
    n = len(ds.y_train) // 2 * 2
    _write_idx(d / "train-images-idx3-ubyte", (ds.x_train[:n, 0] * 16).round().numpy())
    _write_idx(d / "train-labels-idx1-ubyte", ds.y_train[:n].numpy())
    _write_idx(d / "t10k-images-idx3-ubyte", (ds.x_test[:, 0] * 16).round().numpy())
    _write_idx(d / "t10k-labels-idx1-ubyte", ds.y_test.numpy())
    return d


def test_compress_recipe_two_ranks_equals_one_process(tmp_path, capsys):
    """Train → OBD prune (with a sensitivity scan) → share → Huffman, 2 ranks vs 1 process.

    What agrees exactly: the masks (OBD saliencies from the sharded Hessian, then a
    threshold), the code indices, the accuracy at every stage (to 1e-6) and the stage list.
    What cannot be promised: the ``.snn`` bytes. DDP averages two half-batch gradient means
    where one process takes one mean over the batch; the weights then differ by float32
    rounding (~1e-7), and the stored centroids are float32 values of those weights, so a
    bit-for-bit file is luck, not maths. The sizes agree to within a few bytes.
    Only rank 0 writes: the run directory holds one manifest, one report and one .snn, and
    stdout carries one JSON document.
    """
    data = _even_digits_dir((tmp_path / "data").mkdir() or tmp_path / "data")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    args = ["compress", "--recipe", str(recipe), "--model", "lenet300", "--data", str(data),
            "--json", "--quiet"]
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    assert cli_main([*args, "--run-dir", str(one_dir), "--out", str(one_dir / "m.snn")]) == 0
    rep1 = json.loads(capsys.readouterr().out)
    proc = torchrun(["-m", "sparsenet", *args, "--run-dir", str(two_dir),
                     "--out", str(two_dir / "m.snn")])
    rep2 = json.loads(proc.stdout)  # exactly one JSON document: rank 1 printed nothing
    assert [s["kind"] for s in rep2["stages"]] == [s["kind"] for s in rep1["stages"]]
    for s1, s2 in zip(rep1["stages"], rep2["stages"], strict=True):
        assert s2["accuracy"] == pytest.approx(s1["accuracy"], abs=1e-6), s1["kind"]
    assert rep2["final"]["accuracy"] == pytest.approx(rep1["final"]["accuracy"], abs=1e-6)
    assert abs(rep2["final"]["file_bytes"] - rep1["final"]["file_bytes"]) <= 16
    assert (two_dir / "m.snn").is_file() and (two_dir / "report" / "report.json").is_file()
    assert not list(tmp_path.glob("**/sparsenet-rank*"))  # scratch copies cleaned up
    m1, _ = load_model(sorted((one_dir / "stages").glob("02-share.pt"))[0])
    m2, _ = load_model(sorted((two_dir / "stages").glob("02-share.pt"))[0])
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for key, t in s1.items():
        if key.endswith(("mask", "indices", "keep")):
            assert torch.equal(t, s2[key]), key
        else:
            torch.testing.assert_close(s2[key], t, rtol=0, atol=1e-4, msg=key)
