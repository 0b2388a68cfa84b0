"""Shared helpers for the benchmark scripts: trained baselines, commit and machine records.

Benchmarks start from the dense baselines of README's table. They live in
``$SPARSENET_ARTIFACTS`` (default: ``artifacts/`` at the repository root, git-ignored) as
``<model>-<data>.pt``; a missing one is trained with the model's default recipe first
(exactly what ``sparsenet train --model M --data D --seed 0`` does), so every figure can be
reproduced from a fresh clone.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from sparsenet.checkpoint import load_model, save_model
from sparsenet.data import load_dataset
from sparsenet.models import model_for_dataset
from sparsenet.training import default_config, evaluate, fit, seed_everything

ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    return Path(os.environ.get("SPARSENET_ARTIFACTS", ROOT / "artifacts"))


def baseline_path(model: str, data: str = "fashion-mnist", seed: int = 0) -> Path:
    """Path of the trained dense baseline, training it (default recipe) if it is missing."""
    path = artifacts_dir() / f"{model}-{'fmnist' if data == 'fashion-mnist' else data}.pt"
    if path.exists():
        return path
    ds = load_dataset(data)
    seed_everything(seed)
    net = model_for_dataset(model, ds.input_shape, ds.num_classes, seed=seed)
    cfg = default_config(model, ds.name).replace(seed=seed, quiet=True)
    print(f"[bench] training baseline {model} on {ds.name} ({cfg.epochs} epochs) -> {path}")
    history = fit(net, ds.train, cfg, val=ds.test)
    ev = evaluate(net, ds.test)
    save_model(net, path, metadata={"dataset": ds.name, "complete": True, "test_accuracy": ev["accuracy"], "history": history})
    return path


def load_baseline(model: str, data: str = "fashion-mnist") -> tuple[Any, dict[str, Any]]:
    """``(model, metadata)`` of the dense baseline (trained on first use)."""
    return load_model(baseline_path(model, data))


def git_commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=ROOT, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
    }
