"""The report section of a budget search (``sparsenet compress --max-drop``).

Read from the run directory's search journal (``search.json``, written by
:mod:`sparsenet.pipeline.search`): the trade-off curve explored (validation accuracy
against file size, every probe and every decision, the chosen point marked) and the
per-layer table of the chosen settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["read_search", "plot_tradeoff", "search_markdown", "JOURNAL"]

JOURNAL = "search.json"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_search(run_dir: Path) -> dict[str, Any] | None:
    """The journal's plain facts (``None`` if the run was not a search or the file is bad):
    ``probes`` as ``[(bytes, accuracy)]``, ``steps`` (decisions), ``facts`` (budget, result)."""
    path = run_dir / JOURNAL
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != "sparsenet-search":
        return None
    probes = [(int(p["bytes"]), float(p["accuracy"])) for p in (raw.get("probes") or {}).values()
              if isinstance(p, dict) and _num(p.get("bytes")) and _num(p.get("accuracy"))]
    steps = [s for s in raw.get("steps") or [] if isinstance(s, dict) and _num(s.get("accuracy"))
             and _num(s.get("bytes"))]
    facts = raw.get("facts") if isinstance(raw.get("facts"), dict) else {}
    settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
    return {"probes": probes, "steps": steps, "facts": facts, "settings": settings}


def plot_tradeoff(search: dict[str, Any], path: Path) -> Path:
    """Validation accuracy against file size: probes (grey), accepted steps (line), the
    rejected ones (red x), the budget (dashed) and the chosen file (star)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    if search["probes"]:
        b, a = zip(*search["probes"], strict=True)
        ax.scatter([x / 1024 for x in b], [100 * y for y in a], s=10, color="0.7",
                   label="probed (no retraining)")
    steps = [s for s in search["steps"] if not str(s.get("move")).startswith("final")]
    ok = [s for s in steps if s.get("accepted")]
    bad = [s for s in steps if not s.get("accepted")]
    if ok:
        ax.plot([s["bytes"] / 1024 for s in ok], [100 * s["accuracy"] for s in ok], "-o",
                color="tab:blue", ms=4, label="rungs and accepted moves")
    if bad:
        ax.scatter([s["bytes"] / 1024 for s in bad], [100 * s["accuracy"] for s in bad],
                   marker="x", color="tab:red", label="rejected moves")
    chosen = search["facts"].get("result")
    if isinstance(chosen, dict) and _num(chosen.get("file_bytes")) and _num(chosen.get("validation")):
        ax.scatter([chosen["file_bytes"] / 1024], [100 * chosen["validation"]], marker="*", s=220,
                   color="tab:green", zorder=5, label="chosen file")
    floor = search["facts"].get("floor")
    if _num(floor):
        ax.axhline(100 * floor, ls="--", color="k", lw=1, label="budget")
    ax.set_xscale("log")
    ax.set_xlabel("file size (KB, log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Trade-off explored by the search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if _num(x) else "–"


def search_markdown(search: dict[str, Any], layers: list[dict[str, Any]],
                    figure: str | None) -> list[str]:
    """Markdown lines: the budget, the chosen per-layer settings and the decisions."""
    facts, settings = search["facts"], search["settings"]
    result = facts.get("result") if isinstance(facts.get("result"), dict) else {}
    lines = ["", "## Search for the smallest file within the budget", "",
             f"- Budget: validation accuracy ≥ {_pct(facts.get('floor'))} (dense "
             f"{_pct(facts.get('dense_validation'))} − {settings.get('max_drop')} points), on "
             f"{settings.get('holdout')} training images held out of training"
             + (f"; a point meets it with confidence {settings['confidence']:g} (its accuracy "
                "less z·√d/n, d the validation images labelled unlike dense)"
                if _num(settings.get("confidence")) and settings["confidence"] != 0.5 else ""),
             f"- Search time: {result.get('seconds', float('nan')):.0f} s"
             if _num(result.get("seconds")) else "- Search time: (not finished)"]
    if figure:
        lines += ["", f"![tradeoff]({figure})"]
    sparsity = result.get("sparsity") or {}
    bits = result.get("bits") or {}
    if sparsity:
        lines += ["", "| layer | #W | weights kept | bits |", "|---|---:|---:|---:|"]
        weights = {lay["name"]: lay["weights"] for lay in layers}
        for name, s in sparsity.items():
            n = weights.get(name)
            lines.append(f"| {name} | {n:,} | {_pct(1 - s)} | {bits.get(name, '–')} |"
                         if isinstance(n, int) else f"| {name} | – | {_pct(1 - s)} | {bits.get(name, '–')} |")
    lines += ["", "Decisions in order (price: file bytes saved per validation point lost, "
              "probed without retraining; a prune move's accuracy is after its retraining):", "",
              "| # | move | price (B/point) | file (B) | validation | decision |",
              "|---:|---|---:|---:|---:|---|"]
    for i, s in enumerate(search["steps"]):
        price = s.get("price")
        lines.append(f"| {i} | {s.get('move')} | {price / 100:,.0f} |" if _num(price)
                     else f"| {i} | {s.get('move')} | |")
        lines[-1] += (f" {int(s['bytes']):,} | {_pct(s['accuracy'])} | "
                      f"{'accepted' if s.get('accepted') else 'rejected'} |")
    return lines
