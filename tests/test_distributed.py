"""Two processes on loopback with gloo, started by torchrun, against one process."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from sparsenet.checkpoint import load_checkpoint
from sparsenet.data import digits

TIMEOUT = 240  # seconds; the test kills the ranks after this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_idx(d, arr: np.ndarray) -> None:
    import struct

    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    d.write_bytes(head + arr.astype(np.uint8).tobytes())


def _even_digits_dir(tmp_path):
    """Digits as an IDX directory with an even number of samples (no sampler padding)."""
    ds = digits()
    n = len(ds.y_train) // 2 * 2
    _write_idx(tmp_path / "train-images-idx3-ubyte", (ds.x_train[:n, 0] * 16).round().numpy())
    _write_idx(tmp_path / "train-labels-idx1-ubyte", ds.y_train[:n].numpy())
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", (ds.x_test[:, 0] * 16).round().numpy())
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", ds.y_test.numpy())
    return tmp_path


def _run(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_ranks_equal_one_process_with_same_global_batch(tmp_path):
    (tmp_path / "data").mkdir()
    data = _even_digits_dir(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPARSENET_DEBUG_DISTRIBUTED": "1"}
    common = [
        "-m",
        "sparsenet",
        "train",
        "--model",
        "lenet300",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--quiet",
        "--json",
    ]
    one = tmp_path / "one.pt"
    two = tmp_path / "two.pt"
    _run([sys.executable, *common, "--out", str(one)], env)
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            *common,
            "--out",
            str(two),
        ],
        env,
    )
    a, b = load_checkpoint(one), load_checkpoint(two)
    for key, t in a["state_dict"].items():
        # Same batches, same maths; only the order of the gradient sum differs.
        torch.testing.assert_close(b["state_dict"][key], t, rtol=0, atol=1e-5, msg=key)
    assert b["metadata"]["test_accuracy"] == pytest.approx(a["metadata"]["test_accuracy"], abs=1e-6)
    assert b["train_state"]["epoch"] == 2
