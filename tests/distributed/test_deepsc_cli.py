"""``torchrun -m sparsenet deepsc ...`` with 2 gloo ranks against 1 process."""

import json

import pytest

from sparsenet.cli import main as cli_main

from ._launch import torchrun

ARGS = ("deepsc --data digits --layers 1 --atoms 16 --patch 3 --stride 1 --pool 2 "
        "--components 8 --dict-images 200 --encode-iter 5 --json --quiet").split()


@pytest.mark.slow
def test_deepsc_two_ranks_same_accuracy_and_rank_zero_writes(tmp_path, capsys):
    """Sparse codes are computed row by row, each rank its half, then gathered: FISTA with a
    fixed step count is row-independent, so the features and the classifier agree up to
    float32 rounding and the test accuracy to 1e-6. Only rank 0 prints and writes."""
    assert cli_main([*ARGS, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    proc = torchrun(["-m", "sparsenet", *ARGS, "--out", str(tmp_path / "two")])
    two = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)
    assert two["n_features"] == one["n_features"]
    assert json.loads((tmp_path / "two" / "results.json").read_text())["n_test"] == 360
    assert (tmp_path / "two" / "deepsc-model.npz").stat().st_size > 0
