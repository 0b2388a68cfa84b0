"""What a candidate setting would give, without retraining: validation accuracy and real file size.

A *probe* takes a (pruned, float) model, prunes each layer further to its target by
magnitude, shares every layer at its bit width (k-means, linear init: the share stage's
default) and writes the ``.snn`` the encode stage would write (Huffman, per-layer gap
widths chosen by size). It returns the held-out accuracy of that shared model and the size
of that file in bytes: the encoder's real size, codebooks, header and all, not a formula.

Probes drive :mod:`sparsenet.pipeline.search`: a move's price is the bytes it saves per
accuracy point it costs. They are deterministic (the k-means seed is fixed), so a search
resumed after a kill asks the same questions and gets the same answers; the answers are
also kept in the search journal (:class:`Journal`) so a resumed search does not pay twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import bn
from ..coding import save_snn
from ..errors import SparsenetError
from ..io import write_json
from ..prune import prune
from ..share import share_weights
from ..training import predict

__all__ = ["Probe", "probe", "score", "Journal", "JOURNAL", "state_key"]

JOURNAL = "search.json"
_FORMAT = "sparsenet-search"


@dataclass(frozen=True)
class Probe:
    """A probe's answer: validation ``accuracy`` in [0, 1], ``bytes`` of the ``.snn``, and
    ``differ``, the validation images whose label differs from the reference (dense) model's
    (the standard error of the accuracy drop is about √differ / n)."""

    accuracy: float
    bytes: int
    differ: int


def score(model: nn.Module, val: tuple[torch.Tensor, torch.Tensor],
          reference: torch.Tensor) -> tuple[float, int]:
    """Accuracy of ``model`` on ``val = (x, y)`` (exactly :func:`~sparsenet.training.evaluate`'s)
    and the number of images whose predicted label differs from ``reference`` ``(N,)``."""
    pred = predict(model, val[0])
    return float((pred == val[1]).double().mean()), int((pred != reference).sum())


def state_key(sparsity: dict[str, float], bits: dict[str, int], base: str) -> str:
    """A short digest of a probe's question: the model's recipe digest ``base`` and targets."""
    text = json.dumps({"base": base, "sparsity": sparsity, "bits": bits}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@torch.no_grad()
def _prune_to(model: nn.Module, sparsity: dict[str, float]) -> None:
    targets = {k: v for k, v in sparsity.items() if v > 0}
    if targets:
        prune(model, "magnitude", per_layer=targets)


def probe(
    model: nn.Module,
    sparsity: dict[str, float],
    bits: dict[str, int],
    val: tuple[torch.Tensor, torch.Tensor],
    reference: torch.Tensor,
    scratch: Path,
    metadata: dict[str, Any],
    seed: int = 0,
) -> Probe:
    """Accuracy on ``val`` and ``.snn`` bytes of ``model`` pruned to ``sparsity`` and shared at
    ``bits`` (both ``{layer name: value}``), without retraining, and how many of ``val``'s
    images it labels differently from ``reference`` (the dense model's labels, ``(N,)``).
    ``model`` is not changed.

    ``scratch`` is a file path the probe may overwrite (the ``.snn`` it measures).
    """
    m = copy.deepcopy(model)
    _prune_to(m, sparsity)
    if bn.has_batchnorm(m):
        m = bn.fold_bn(m)  # as the share stage does: the shared weights are the deployed ones
    share_weights(m, weight_bits=dict(bits), init="linear", seed=seed)
    acc, differ = score(m, val, reference)
    save_snn(m, scratch, coder="huffman", gap_bits="auto", metadata=metadata)
    return Probe(acc, scratch.stat().st_size, differ)


class Journal:
    """The search's memory in ``run_dir/search.json``: settings, probe answers, decisions.

    Written atomically after every change, so a killed search resumes where it stopped.
    A journal written with other settings is refused unless the search starts over.
    """

    def __init__(self, run_dir: Path, settings: dict[str, Any]) -> None:
        self.path = run_dir / JOURNAL
        self.settings = settings
        self.probes: dict[str, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}

    def load(self) -> bool:
        """Read an earlier journal of the same settings; ``False`` if there is none."""
        if not self.path.is_file():
            return False
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SparsenetError(f"{self.path}: corrupt search journal ({exc})") from None
        if not isinstance(old, dict) or old.get("format") != _FORMAT:
            raise SparsenetError(f"{self.path}: not a sparsenet search journal")
        if old.get("settings") != self.settings:
            raise SparsenetError(
                f"{self.path}: holds a search with other settings ({old.get('settings')}); pass "
                "--force to start over or choose another --run-dir"
            )
        probes, steps = old.get("probes"), old.get("steps")
        if not isinstance(probes, dict) or not isinstance(steps, list):
            raise SparsenetError(f"{self.path}: corrupt search journal (probes/steps)")
        # probes are answers to keep; steps are re-noted as the resumed search replays them
        self.probes, self.steps = probes, []
        facts = old.get("facts")
        self.facts = facts if isinstance(facts, dict) else {}
        return True

    def remove(self) -> None:
        """Delete the journal (``--force``): only this file, which the search wrote."""
        if self.path.is_file():
            os.unlink(self.path)

    def save(self) -> None:
        write_json(self.path, {"format": _FORMAT, "version": 1, "settings": self.settings,
                               "facts": self.facts, "probes": self.probes, "steps": self.steps})

    def cached(self, key: str) -> Probe | None:
        """The answer kept for ``key``; None if there is none (or one from a journal written
        before answers counted ``differ``: asked again, it gives the same accuracy and bytes)."""
        got = self.probes.get(key)
        if isinstance(got, dict) and isinstance(got.get("accuracy"), (int, float)) \
                and isinstance(got.get("bytes"), int) and isinstance(got.get("differ"), int):
            return Probe(float(got["accuracy"]), int(got["bytes"]), int(got["differ"]))
        return None

    def remember(self, key: str, answer: Probe, **facts: Any) -> None:
        self.probes[key] = {"accuracy": answer.accuracy, "bytes": answer.bytes,
                            "differ": answer.differ, **facts}
        self.save()
