"""Helpers for the hostile-input regression tests: tiny trained models and CLI runs."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sparsenet.checkpoint import save_model
from sparsenet.cli import main
from sparsenet.models import model_for_dataset
from sparsenet.training import TrainConfig, fit


def digits_checkpoint(path: Path, data, epochs: int = 1) -> Path:
    """A lenet300 trained ``epochs`` epoch(s) on digits, saved like `sparsenet train` does."""
    torch.manual_seed(0)
    model = model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=0)
    fit(model, data.train, TrainConfig(epochs=epochs, lr=0.05, quiet=True))
    save_model(model, path, metadata={"dataset": "digits", "complete": True})
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr). argparse exits count too."""
    try:
        rc = main([os.fspath(a) for a in argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (to assert that a failed command created nothing)."""
    return {os.fspath(p.relative_to(root)) for p in root.rglob("*")}


def assert_one_line_error(rc: int, err: str, fragment: str = "") -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert fragment in err, err
