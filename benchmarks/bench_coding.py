"""Entropy coding and the .snn file on pruned + shared LeNets (Fashion-MNIST baselines).

1. Compression tables (Deep Compression Tables 2-3 layout) for Huffman and ANS.
2. Bits per symbol against the Shannon bound on the real index and gap streams.
   Targets: Huffman <= H + 0.1 bits/symbol; ANS <= 0.5 % over H.
3. Huffman throughput against dahuffman on the same streams. Target: decode >= 30x.
4. Sparse runtime latency against dense for LeNet-300-100 at 8 % density, batch 1 and 64.
   Target (Han's CPU figure): batch 1 >= 3x faster.
5. .snn load time and peak memory against the torch checkpoint.

Pruning and sharing use sparsenet.prune (magnitude, per layer) and sparsenet.share (linear
init, as Deep Compression). No retraining:
the accuracies shown are of the un-retrained model and only give context.

    nice -n 5 .venv/bin/python benchmarks/bench_coding.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import timeit
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import git_commit, load_baseline  # noqa: E402  (benchmarks/_common.py)

from sparsenet import load  # noqa: E402
from sparsenet.checkpoint import save_model  # noqa: E402
from sparsenet.coding import huffman, read_snn, save_snn  # noqa: E402
from sparsenet.coding.accounting import format_report  # noqa: E402
from sparsenet.prune import prune  # noqa: E402
from sparsenet.share import share_weights  # noqa: E402

# Deep Compression's per-layer densities (LeNet-300: Table 2 uses 8/9/26 %; the latency
# test below uses a flat 8 %). LeNet-5: conv1 66 %, conv2 12 %, fc1 8 %, fc2 19 %.
DENSITY = {
    "lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
    "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
}
BITS = {"conv": 8, "fc": 5}


def compressed(name: str, density: dict[str, float] | None = None) -> tuple[nn.Module, str]:
    """The baseline pruned and shared; returns (model, how)."""
    model, _ = load_baseline(name)
    density = density or DENSITY[name]
    # sparsenet.prune takes per-layer *sparsity* (the fraction removed)
    prune(model, method="magnitude", per_layer={k: 1.0 - v for k, v in density.items()})
    share_weights(model, weight_bits=BITS, init="linear")
    how = ["sparsenet.prune (magnitude)", "sparsenet.share (linear init)"]
    return model, " + ".join(how) + ", no retraining"


def accuracy(model: nn.Module, data: Any) -> float:
    from sparsenet.training import evaluate

    return float(evaluate(model, data.test)["accuracy"])


def stream_table(rep_h: dict, rep_a: dict, model_name: str) -> list[dict[str, Any]]:
    rows = []
    for lh, la in zip(rep_h["layers"], rep_a["layers"], strict=True):
        for s in ("index", "gaps"):
            if s not in lh["streams"]:
                continue
            h, a = lh["streams"][s], la["streams"][s]
            H = h["entropy_per_symbol"]
            rows.append(
                {
                    "model": model_name,
                    "layer": lh["layer"],
                    "stream": s,
                    "symbols": h["symbols"],
                    "entropy": H,
                    "huffman": h["bits_per_symbol"],
                    "ans": a["bits_per_symbol"],
                    "huffman_minus_H": h["bits_per_symbol"] - H,
                    "ans_over_H_pct": 100 * (a["bits_per_symbol"] / H - 1) if H else None,
                    "huffman_table_bytes": h["table_bits"] // 8,
                    "ans_table_bytes": a["table_bits"] // 8,
                }
            )
    return rows


def throughput(streams: dict[str, np.ndarray], reps: int) -> list[dict[str, Any]]:
    import dahuffman

    rows = []
    for key, x in streams.items():
        data = huffman.encode(x)
        assert np.array_equal(huffman.decode(data), x)
        codec = dahuffman.HuffmanCodec.from_data(x.tolist())
        enc_d = codec.encode(x.tolist())
        assert codec.decode(enc_d) == x.tolist()
        t_ours_d = min(timeit.repeat(lambda d=data: huffman.decode(d), number=1, repeat=reps))
        t_ours_e = min(timeit.repeat(lambda v=x: huffman.encode(v), number=1, repeat=reps))
        t_dah_d = min(
            timeit.repeat(lambda c=codec, e=enc_d: c.decode(e), number=1, repeat=max(2, reps // 3))
        )
        t_dah_e = min(
            timeit.repeat(
                lambda c=codec, v=x: c.encode(v.tolist()), number=1, repeat=max(2, reps // 3)
            )
        )
        rows.append(
            {
                "stream": key,
                "symbols": int(x.size),
                "ours_decode_msym_s": x.size / t_ours_d / 1e6,
                "dahuffman_decode_msym_s": x.size / t_dah_d / 1e6,
                "decode_speedup": t_dah_d / t_ours_d,
                "ours_encode_msym_s": x.size / t_ours_e / 1e6,
                "dahuffman_encode_msym_s": x.size / t_dah_e / 1e6,
                "encode_speedup": t_dah_e / t_ours_e,
                "ours_bits": 8 * len(data),
                "dahuffman_bits": 8 * len(enc_d),
                "_t": (t_ours_d, t_dah_d, t_ours_e, t_dah_e),
            }
        )
    return rows


def model_totals(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """All of one model's streams, each decoded on its own as the file stores them."""
    mine = [r for r in rows if r["stream"].startswith(prefix + ".")]
    t = np.sum([r["_t"] for r in mine], axis=0)
    n = sum(r["symbols"] for r in mine)
    return {
        "stream": f"{prefix}: all {len(mine)} streams",
        "symbols": n,
        "ours_decode_msym_s": n / t[0] / 1e6,
        "dahuffman_decode_msym_s": n / t[1] / 1e6,
        "decode_speedup": t[1] / t[0],
        "ours_encode_msym_s": n / t[2] / 1e6,
        "dahuffman_encode_msym_s": n / t[3] / 1e6,
        "encode_speedup": t[3] / t[2],
    }


def latency(model: nn.Module, tmp: Path, reps: int) -> list[dict[str, Any]]:
    """Dense vs the sparse runtime (peers: bare scipy CSR, bare torch CSR), one thread, same run."""
    import scipy.sparse as sp

    path = tmp / "lat.snn"
    save_snn(model, path)
    dense, sparse = load(path), load(path, runtime="sparse")
    layers = (model.fc1, model.fc2, model.fc3)
    mats = [(sp.csr_matrix(m.weight.detach().numpy()), m.bias.detach().numpy()) for m in layers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tmats = [(m.weight.detach().to_sparse_csr(), m.bias.detach()) for m in layers]

    def scipy_forward(x: np.ndarray) -> np.ndarray:
        h = x.reshape(x.shape[0], -1).T  # (784, B)
        for i, (w, b) in enumerate(mats):
            h = w @ h + b[:, None]
            if i < 2:
                np.maximum(h, 0, out=h)
        return h.T

    def torch_csr_forward(x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1).T  # (784, B)
        for i, (w, b) in enumerate(tmats):
            h = torch.sparse.mm(w, h) + b[:, None]
            if i < 2:
                h = torch.relu(h)
        return h.T

    rows = []
    torch.set_num_threads(1)
    for batch in (1, 64):
        x = torch.rand(batch, 1, 28, 28)
        xn = x.numpy()
        with torch.no_grad():
            torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-5)
            fns = {
                "dense": lambda x=x: dense(x),
                "sparse": lambda x=x: sparse(x),
                "scipy_csr": lambda xn=xn: scipy_forward(xn),
                "torch_csr": lambda x=x: torch_csr_forward(x),
            }
            for f in fns.values():
                f()
            n = max(20, reps * (50 if batch == 1 else 10))
            t = {
                k: float(np.median(timeit.repeat(f, number=n, repeat=7))) / n
                for k, f in fns.items()
            }
        rows.append(
            {
                "batch": batch,
                "dense_us": 1e6 * t["dense"],
                "sparse_us": 1e6 * t["sparse"],
                "scipy_csr_us": 1e6 * t["scipy_csr"],
                "sparse_speedup": t["dense"] / t["sparse"],
                "scipy_speedup": t["dense"] / t["scipy_csr"],
                "torch_csr_us": 1e6 * t["torch_csr"],
                "torch_csr_speedup": t["dense"] / t["torch_csr"],
            }
        )
    return rows


_LOAD_SNIPPET = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch, sparsenet, sparsenet.inference, sparsenet.coding, constriction, scipy.sparse
torch.set_num_threads(1)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM)
base = status("VmRSS:")
t = time.perf_counter()
if {kind!r} == "pt":
    model = sparsenet.load({path!r})
else:
    model = sparsenet.load({path!r}, runtime={kind!r})
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "peak_rss_delta_kib": status("VmHWM:") - base,
                   "resident_delta_kib": status("VmRSS:") - base}}))
"""


def load_cost(paths: dict[str, Path], reps: int) -> list[dict[str, Any]]:
    rows = []
    for label, (kind, path) in paths.items():
        runs = []
        for _ in range(max(2, reps // 2)):
            code = _LOAD_SNIPPET.format(root=str(ROOT), kind=kind, path=str(path))
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append(
            {
                "file": label,
                "bytes": path.stat().st_size,
                "load_ms": 1e3 * min(r["seconds"] for r in runs),
                "peak_rss_delta_kib": int(np.median([r["peak_rss_delta_kib"] for r in runs])),
                "resident_delta_kib": int(np.median([r["resident_delta_kib"] for r in runs])),
            }
        )
    return rows


def plot(streams: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['layer']} {r['stream']}" for r in streams]
    x = np.arange(len(streams))
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(streams)), 4))
    ax.bar(x - 0.27, [r["entropy"] for r in streams], 0.27, label="entropy H")
    ax.bar(x, [r["huffman"] for r in streams], 0.27, label="Huffman")
    ax.bar(x + 0.27, [r["ans"] for r in streams], 0.27, label="ANS")
    ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("bits / symbol (payload)")
    ax.set_title("Index and gap streams of pruned + shared LeNets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bits_per_symbol.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/coding"))
    ap.add_argument("--quick", action="store_true", help="fewer timing repetitions")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reps = 3 if args.quick else 7
    torch.set_num_threads(1)
    from sparsenet.data import fashion_mnist

    data = fashion_mnist()
    commit = git_commit()
    result: dict[str, Any] = {
        "commit": commit,
        "machine": f"{platform.processor() or platform.machine()}, 2-core CPU shared with other jobs (timings noisy; ratios are from one run)",
        "torch_threads": 1,
        "models": {},
    }
    streams_all: list[dict[str, Any]] = []
    tput_streams: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        load_paths: dict[str, tuple[str, Path]] = {}
        for name in ("lenet300", "lenet5"):
            model, how = compressed(name)
            base, _ = load_baseline(name)
            entry: dict[str, Any] = {
                "method": how,
                "acc_dense": accuracy(base, data),
                "acc_compressed": accuracy(model, data),
            }
            reps_by = {}
            for coder in ("huffman", "ans"):
                for layout in ("sparse", "auto"):
                    p = tmp / f"{name}-{coder}-{layout}.snn"
                    rep = save_snn(model, p, coder=coder, layout=layout)
                    reps_by[(coder, layout)] = rep
                    loaded = load(p)
                    x = data.x_test[:256]
                    with torch.no_grad():
                        assert torch.equal(loaded(x), model.eval()(x)), "round trip not bit-exact"
                    entry[f"{coder}_{layout}"] = {
                        "total": rep["total"],
                        "layers": [
                            {k: v for k, v in r.items() if k != "streams"} for r in rep["layers"]
                        ],
                    }
                    print(f"\n== {name} {coder} layout={layout} ({how})\n" + format_report(rep))
            ckpt = tmp / f"{name}.pt"
            save_model(model, ckpt)
            entry["checkpoint_bytes"] = ckpt.stat().st_size
            result["models"][name] = entry
            streams_all += stream_table(
                reps_by[("huffman", "sparse")], reps_by[("ans", "sparse")], name
            )
            snn = read_snn(tmp / f"{name}-huffman-sparse.snn")
            for lc in snn.layers:
                tput_streams[f"{name}.{lc.name.rsplit('.', 1)[0]}.index"] = lc.stream("index")
                tput_streams[f"{name}.{lc.name.rsplit('.', 1)[0]}.gaps"] = lc.stream("gaps")
            load_paths[f"{name}.pt (torch checkpoint)"] = ("pt", ckpt)
            load_paths[f"{name}.snn dense runtime"] = ("dense", tmp / f"{name}-huffman-sparse.snn")
            load_paths[f"{name}.snn sparse runtime"] = (
                "sparse",
                tmp / f"{name}-huffman-sparse.snn",
            )
        result["streams"] = streams_all
        print("\n== bits/symbol (payload) vs entropy")
        print(f"{'stream':<28}{'n':>8}{'H':>8}{'Huff':>8}{'H+':>7}{'ANS':>8}{'ANS/H':>8}")
        for r in streams_all:
            anspct = f"{r['ans_over_H_pct']:+.2f}%" if r["ans_over_H_pct"] is not None else "-"
            print(
                f"{r['model'] + '.' + r['layer'] + '.' + r['stream']:<28}{r['symbols']:>8}{r['entropy']:>8.3f}"
                f"{r['huffman']:>8.3f}{r['huffman_minus_H']:>7.3f}{r['ans']:>8.3f}{anspct:>8}"
            )
        tput_streams["all streams concatenated, one code"] = np.concatenate(
            list(tput_streams.values())
        )
        rows = throughput(tput_streams, reps)
        rows += [model_totals(rows, name) for name in ("lenet300", "lenet5")]
        for r in rows:
            r.pop("_t", None)
        result["throughput"] = [r for r in rows if r["symbols"] >= 2000]
        print("\n== Huffman throughput vs dahuffman (same streams, M symbols/s)")
        print(f"{'stream':<28}{'n':>8}{'dec':>8}{'dah':>8}{'x':>7}{'enc':>8}{'dah':>8}{'x':>7}")
        for r in result["throughput"]:
            print(
                f"{r['stream']:<28}{r['symbols']:>8}{r['ours_decode_msym_s']:>8.2f}{r['dahuffman_decode_msym_s']:>8.2f}"
                f"{r['decode_speedup']:>7.1f}{r['ours_encode_msym_s']:>8.2f}{r['dahuffman_encode_msym_s']:>8.2f}{r['encode_speedup']:>7.1f}"
            )
        flat8, _ = compressed("lenet300", {"fc1": 0.08, "fc2": 0.08, "fc3": 0.08})
        result["latency"] = latency(flat8, tmp, reps)
        print("\n== LeNet-300-100 at 8% density, 1 thread: time per forward (us)")
        for r in result["latency"]:
            print(
                f"batch {r['batch']:>3}: dense {r['dense_us']:8.1f}  sparse runtime {r['sparse_us']:8.1f} "
                f"({r['sparse_speedup']:.2f}x)  bare scipy CSR {r['scipy_csr_us']:8.1f} ({r['scipy_speedup']:.2f}x)"
                f"  bare torch CSR {r['torch_csr_us']:8.1f} ({r['torch_csr_speedup']:.2f}x)"
            )
        result["load"] = load_cost(load_paths, reps)
        print(
            "\n== load time and peak memory (fresh process each; RSS over the post-import baseline)"
        )
        for r in result["load"]:
            print(
                f"{r['file']:<34}{r['bytes']:>10,} B {r['load_ms']:>8.1f} ms "
                f"peak +{r['peak_rss_delta_kib']:,} KiB, resident +{r['resident_delta_kib']:,} KiB"
            )
    (out / "bench_coding.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(streams_all, out)
    print(f"\nwrote {out / 'bench_coding.json'} and bits_per_symbol.png")


if __name__ == "__main__":
    main()
