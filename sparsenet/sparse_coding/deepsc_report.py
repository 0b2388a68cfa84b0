"""The run report of ``sparsenet deepsc``: ``report.md`` with each layer's atoms as a PNG,
the accuracy of every configuration run into the folder, and the time of each stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..io import atomic_write, atomic_write_bytes

__all__ = ["layer_atoms", "save_atoms_png", "write_report"]


def layer_atoms(model: Any, i: int) -> np.ndarray:
    """Atoms of fitted layer ``i`` as images (K, C, s, s), un-whitened for display.

    Layer 1's channels are the image's; a deeper layer's are the (DrLIM-reduced) pooled
    codes of the layer below, so its "image" shows which input dimensions (rows) at which
    patch positions (columns) each atom uses.
    """
    layer = model.layers_[i]
    a = layer.atoms
    if layer.whitener is not None:  # show what the atom responds to before whitening
        a = a @ torch.linalg.pinv(layer.whitener.whitening_)
    c = a.shape[1] // (layer.size * layer.size)
    return a.reshape(-1, c, layer.size, layer.size).numpy()


def save_atoms_png(atoms: np.ndarray, path: str | os.PathLike[str], title: str = "") -> None:
    """A grid of atoms (K, C, s, s) as grey images, each scaled to its own range.

    One channel: the s × s patch. Several: a C × s² image per atom (channels down,
    patch positions across).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, c = atoms.shape[:2]
    tiles = atoms[:, 0] if c == 1 else atoms.reshape(k, c, -1)  # (K, h, w)
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    aspect = tiles.shape[1] / tiles.shape[2]
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.5, rows * 0.5 * min(aspect, 4) + 0.4), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(tiles[i], cmap="gray", interpolation="nearest", aspect="auto")
    if title:
        fig.suptitle(title, fontsize=8)

    def writer(fh: IO[bytes]) -> None:
        fig.savefig(fh, format="png", dpi=100)

    atomic_write(path, writer)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ",".join(_fmt(x) for x in v)
    return "—" if v is None else str(v)


def write_report(out: str | os.PathLike[str], model: Any, result: dict[str, Any]) -> Path:
    """Write ``out/atoms-layer{i}.png`` for every layer and ``out/report.md``.

    ``result`` is the run's ``results.json`` content: ``dataset``, ``test_accuracy``,
    ``stages`` (seconds per stage), ``params``, and ``history`` (earlier runs into the same
    folder, each with the same keys), which gives the accuracy-per-configuration table.
    """
    out = Path(out)
    pngs = []
    for i in range(len(model.layers_)):
        name = f"atoms-layer{i + 1}.png"
        k = model.layers_[i].atoms.shape[0]
        save_atoms_png(layer_atoms(model, i), out / name,
                       f"layer {i + 1}: {k} atoms ({result['dataset']})")
        pngs.append((i + 1, k, name))
    runs = [*result.get("history", []), result]
    keys = ["n_components", "patch_size", "patch_stride", "alpha", "drlim", "C",
            "encode_method", "encode_iter", "classifier"]
    lines = [
        f"# DeepSC on {result['dataset']}",
        "",
        f"Test accuracy **{result['test_accuracy']:.4f}** ({result['n_train']} training, "
        f"{result['n_test']} test images, {result['n_features']} features, "
        f"{result.get('threads', '?')} thread(s)).",
        "",
        "## Accuracy per configuration (runs into this folder, latest last)",
        "",
        "| " + " | ".join(["test accuracy", *keys, "total s"]) + " |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for r in runs:
        p = r.get("params", {})
        cells = [f"{r['test_accuracy']:.4f}", *(_fmt(p.get(k)) for k in keys),
                 "—" if r.get("seconds") is None else f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Time per stage (wall seconds)", "", "| stage | s |", "|---|---:|"]
    for stage, secs in result.get("stages", {}).items():
        lines.append(f"| {stage} | {secs:.1f} |")
    lines += ["", "## Atoms", ""]
    for layer, k, name in pngs:
        lines += [f"Layer {layer} ({k} atoms):", "", f"![layer {layer} atoms]({name})", ""]
    text = "\n".join(lines)
    path = out / "report.md"
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path
