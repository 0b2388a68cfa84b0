"""Mutation fuzzers for .pt checkpoints and run manifests (issue 17), like the .snn one in
tests/coding/test_snn_container.py: every mutant gives a SparsenetError or loads an
identical model / the identical report, never another exception, and loading stays
within a stated memory cap."""

from __future__ import annotations

import copy
import json
import random
import resource
import shutil

import pytest
import torch
from hostile_helpers import digits_checkpoint

from sparsenet.checkpoint import load_model
from sparsenet.errors import SparsenetError
from sparsenet.integrity import verify_checkpoint_zip
from sparsenet.report import build_report

# Loading any mutant of a ~1 MB checkpoint may raise peak memory by at most this much.
MEMORY_CAP_BYTES = 256 << 20


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _load_checked(path):
    """What every CLI command does with a .pt input (cli/guards.py), then load_model."""
    verify_checkpoint_zip(path)
    return load_model(path)[0]


def _mutants(data: bytes, rng: random.Random, n: int):
    for i in range(n):
        b = bytearray(data)
        op = i % 5
        if op == 0:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            b = b[: rng.randrange(len(b))]
        elif op == 2:  # overwrite a run with random bytes
            at = rng.randrange(len(b))
            b[at : at + 16] = bytes(rng.randrange(256) for _ in range(16))
        elif op == 3:  # duplicate a slice (sizes and offsets no longer agree)
            at = rng.randrange(len(b))
            b[at:at] = b[max(0, at - 64) : at]
        else:  # zero a 4-byte field (sizes, offsets, CRCs in the zip records)
            at = rng.randrange(len(b) - 4)
            b[at : at + 4] = b"\0\0\0\0"
        yield bytes(b)


@pytest.mark.parametrize("seed", [0, 1])
def test_checkpoint_mutants(tmp_path, digits_data, seed):
    src = digits_checkpoint(tmp_path / "d.pt", digits_data)
    ref = load_model(src)[0].state_dict()
    data = src.read_bytes()
    rng = random.Random(seed)
    base = _peak_rss()
    mutant = tmp_path / "m.pt"
    outcomes = {"error": 0, "identical": 0}
    for blob in _mutants(data, rng, 60):
        mutant.write_bytes(blob)
        try:
            model = _load_checked(mutant)
        except SparsenetError:
            outcomes["error"] += 1
            continue
        got = model.state_dict()
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
        outcomes["identical"] += 1
    assert outcomes["error"] > 0
    assert _peak_rss() - base < MEMORY_CAP_BYTES


def _manifest_mutants(man: dict, rng: random.Random, n: int):
    """Structural mutations: delete a key, swap a value's type, nest garbage."""
    junk = [None, 0, -1, 1e308, float("nan"), "", "x", [], {}, [1], {"a": 1}, True, 2**70]

    def paths(obj, prefix=()):
        yield prefix
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from paths(v, prefix + (i,))

    all_paths = [p for p in paths(man) if p]
    for _ in range(n):
        m = copy.deepcopy(man)
        path = rng.choice(all_paths)
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        if rng.random() < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(junk)
        yield m


def test_manifest_mutants(tmp_path, digits_data):
    from sparsenet.pipeline import compress

    src = digits_checkpoint(tmp_path / "d.pt", digits_data)
    compress(str(src), digits_data, {"stages": [{"prune": {"sparsity": 0.5}}]},
             run_dir=tmp_path / "run", quiet=True, report=False)
    ref = build_report(tmp_path / "run")
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    rng = random.Random(0)
    work = tmp_path / "mut"
    shutil.copytree(tmp_path / "run", work)
    clean = 0
    for m in _manifest_mutants(man, rng, 150):
        (work / "manifest.json").write_text(json.dumps(m))
        try:
            rep = build_report(work)
        except SparsenetError:
            continue
        clean += 1
        assert isinstance(rep["final"]["compression"], float)
        json.dumps(rep)  # the report is always serialisable
    assert clean < 150
    assert ref["complete"]
