"""Issue 17, item 16: ``sparsenet info`` and ``inspect`` read a .snn file's header, never
its weights (sparsenet.coding.describe), and print what they printed from the decoded file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from snn_helpers import edit_header, prune_and_share, rechecksum
from torch import nn

import sparsenet
from sparsenet.cli import main
from sparsenet.cli.common import json_safe
from sparsenet.coding import (
    huffman,
    inspect_snn,
    read_header,
    read_snn,
    save_snn,
    size_report,
)
from sparsenet.coding.codec import LayerCode
from sparsenet.errors import CorruptFileError
from sparsenet.inference import describe_snn
from sparsenet.summary import model_summary

ROOT = Path(__file__).resolve().parents[2]
HUGE_IN = 33_333_334  # fc1 becomes 300 x HUGE_IN: 10^10 weights, 40 GB as float32
CAP_MB = 2048  # address space of the subprocess that reads the huge file


@pytest.fixture()
def files(tmp_path, lenet300_digits, lenet5_digits) -> list[Path]:
    """Every storage mode, both coders, module swaps, a graph record with BN and no bias."""
    from sparsenet.lowrank import factorize
    from sparsenet.models import build_model

    save_snn(lenet300_digits, tmp_path / "h.snn", metadata={"dataset": "digits"})
    save_snn(lenet300_digits, tmp_path / "a.snn", coder="ans", layout="sparse")
    save_snn(lenet5_digits, tmp_path / "l5.snn", gap_bits="auto")
    raw = build_model("lenet300", seed=1, in_features=64)  # dense + sparse_raw layers
    keep = torch.rand(raw.fc1.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.1
    with torch.no_grad():
        raw.fc1.weight.mul_(keep)
    save_snn(raw, tmp_path / "raw.snn")
    save_snn(factorize(build_model("lenet300", seed=0, in_features=64), rank={"fc1": 8}),
             tmp_path / "f.snn")
    g = nn.Sequential(
        nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
    )
    save_snn(prune_and_share(g, density=0.3, k=8), tmp_path / "g.snn")
    return sorted(tmp_path.glob("*.snn"))


def _json(capsys, *argv) -> dict:
    assert main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def _plain(obj):
    """``obj`` as ``--json`` prints it (non-finite floats as null, tuples as lists)."""
    return json.loads(json.dumps(json_safe(obj)))


def test_item_16_info_and_inspect_numbers_equal_the_decoded_files(files, capsys):
    modes = set()
    for path in files:
        loaded = sparsenet.load(path)  # the decoded path: what info/inspect printed before
        expected = model_summary(loaded)
        assert describe_snn(path).summary == expected, path.name
        info = _json(capsys, "info", path, "--json")
        assert {k: info[k] for k in expected} == _plain(expected), path.name
        assert info["arch"] == _plain(getattr(loaded, "arch", None))
        assert info["metadata"] == read_snn(path).metadata
        assert info["file_bytes"] == path.stat().st_size

        snn = read_snn(path)
        modes |= {lc.mode for lc in snn.layers}
        report = size_report(snn)
        inspected = _json(capsys, "inspect", path, "--json")
        assert inspected == _plain({**report, "file": str(path), "metadata": snn.metadata})
        assert inspect_snn(path) == {**report, "file": str(path), "metadata": snn.metadata}
    assert modes == {"dense", "codebook", "sparse", "sparse_raw"}


def test_item_16_info_decodes_nothing_and_inspect_no_weight(files, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(LayerCode, "dense", boom)
    monkeypatch.setattr(LayerCode, "real_values", boom)
    monkeypatch.setattr(LayerCode, "csr", boom)
    for path in files:
        inspected = _json(capsys, "inspect", path, "--json")  # symbol streams only
        assert inspected["total"]["file_bytes"] == path.stat().st_size
    monkeypatch.setattr(huffman, "decode", boom)
    monkeypatch.setattr(sparsenet.coding.ans, "decode", boom)
    for path in files:
        assert _json(capsys, "info", path, "--json")["file_bytes"] == path.stat().st_size
        assert main(["info", str(path)]) == 0 and "total" in capsys.readouterr().out


def test_item_16_huge_claimed_layer_allocates_nothing(tmp_path, lenet300_digits):
    """The header says fc1 holds 10^10 weights (40 GB): over the default limit info and
    inspect refuse in one line; with the limit raised they describe the file inside a
    2 GiB address space, where loading it runs out of memory."""
    save_snn(lenet300_digits, tmp_path / "ok.snn")
    assert read_snn(tmp_path / "ok.snn").layers[0].mode == "sparse"

    def grow(h):
        h["arch"]["kwargs"]["in_features"] = HUGE_IN
        h["layers"][0]["shape"] = [300, HUGE_IN]

    huge = tmp_path / "huge.snn"
    huge.write_bytes(edit_header((tmp_path / "ok.snn").read_bytes(), grow))
    script = textwrap.dedent(f"""
        import contextlib, io, json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({CAP_MB} << 20, {CAP_MB} << 20))
        from sparsenet.inference import describe_snn
        from sparsenet.errors import CorruptFileError
        try:
            describe_snn({str(huge)!r})
        except CorruptFileError as exc:
            library = str(exc)
        library_imports_cli = "sparsenet.cli" in sys.modules
        from sparsenet.cli import main
        runs = []
        for argv in (["info"], ["inspect"], ["info", "--json", "--max-decode-mb", "100000"],
                     ["inspect", "--json"]):  # the raised limit stays for the last run
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main([argv[0], {str(huge)!r}, *argv[1:]])
            runs.append([rc, out.getvalue(), err.getvalue()])
        import sparsenet
        try:
            sparsenet.load({str(huge)!r})
            load = "loaded"
        except MemoryError:
            load = "out of memory"
        print(json.dumps({{"library": library, "cli": library_imports_cli, "runs": runs,
                          "load": load}}))
        """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert "decode limit" in got["library"] and not got["cli"]
    for rc, out, err in got["runs"][:2]:
        assert rc == 2 and out == "" and err.count("\n") == 1, err
        assert "decode limit" in err and "Traceback" not in err
    (rc_i, out_i, err_i), (rc_s, out_s, err_s) = got["runs"][2:]
    assert rc_i == 0 and rc_s == 0 and err_i == "" and err_s == "", (err_i, err_s)
    info, inspected = json.loads(out_i), json.loads(out_s)
    nnz = read_snn(tmp_path / "ok.snn").layers[0].nnz
    assert info["layers"][0]["weights"] == 300 * HUGE_IN
    assert info["layers"][0]["nonzero"] == nnz
    assert inspected["layers"][0]["weights"] == 300 * HUGE_IN and inspected["layers"][0]["nnz"] == nnz
    assert got["load"] == "out of memory"  # the cap would have caught a decode


def test_item_16_hostile_headers_describe_or_raise_corrupt(tmp_path, tiny_model):
    """Rechecksummed bit flips: the header-only paths describe the file or raise
    CorruptFileError, like loading it."""
    from sparsenet.coding.container import _PRE

    save_snn(tiny_model, tmp_path / "t.snn", layout="sparse")
    data = (tmp_path / "t.snn").read_bytes()
    magic, version, flags, hlen, _ = _PRE.unpack_from(data, 0)
    plain = zlib.decompress(data[_PRE.size : _PRE.size + hlen]) if flags else b""
    if flags:  # store the JSON plain, so that flips land in its text
        data = rechecksum(_PRE.pack(magic, version, 0, len(plain), 0) + plain
                          + data[_PRE.size + hlen :])
    rng = np.random.default_rng(16)
    outcomes = {"ok": 0, "corrupt": 0}
    path = tmp_path / "x.snn"
    for _ in range(150):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 3))):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(rechecksum(bytes(b)))
        for fn in (read_header, describe_snn, inspect_snn):
            try:
                fn(path)
                outcomes["ok"] += 1
            except CorruptFileError:
                outcomes["corrupt"] += 1
    assert outcomes["corrupt"] > 0 and outcomes["ok"] > 0
