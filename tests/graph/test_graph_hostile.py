"""Hostile architecture records: refused with CorruptFileError / CheckpointError, never run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from graph_models import MLP

import sparsenet
from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import CheckpointError, CorruptFileError

sys.path.insert(0, str(Path(__file__).parents[1] / "coding"))
from snn_helpers import edit_header  # noqa: E402

ROOT = Path(__file__).parents[2]


@pytest.fixture()
def mlp_snn(tmp_path) -> bytes:
    torch.manual_seed(0)
    sparsenet.save_snn(MLP(hidden=8), tmp_path / "m.snn")
    return (tmp_path / "m.snn").read_bytes()


def _node(rec: dict, op: str) -> dict:
    return next(n for n in rec["nodes"] if n["op"] == op)


def _fn(rec: dict) -> dict:
    return next(n for n in rec["nodes"] if n["op"] == "call_function")


HOSTILE = {
    "os.system": lambda r: _fn(r).update(target="os.system"),
    "builtins.eval": lambda r: _fn(r).update(target="builtins.eval"),
    "unknown op": lambda r: _fn(r).update(target="torch.nn.functional.frobnicate"),
    "method outside the list": lambda r: _node(r, "call_method").update(target="__reduce_ex__"),
    "getattr of __dict__": lambda r: _fn(r).update(
        target="builtins.getattr", args=[{"node": "x"}, "__dict__"]),
    "module type os.system": lambda r: r["modules"][0].update(type="os.system"),
    "module type not whitelisted": lambda r: r["modules"][0].update(type="Module"),
    "module kwarg not a constructor arg": lambda r: r["modules"][0]["kwargs"].update(
        device="cuda"),
    "module target injection": lambda r: _node(r, "call_module").update(
        target='fc1(__import__("os").system("echo pwned"))'),
    "module path with dunder": lambda r: r["modules"][0].update(name="__class__"),
    "node name injection": lambda r: r["nodes"][0].update(name="x; import os"),
    "kwarg name injection": lambda r: _fn(r).update(kwargs={"a=__import__('os')#": 1}),
    "placeholder injection": lambda r: r["nodes"][0].update(target="x=print('pwned')"),
    "undefined node": lambda r: _fn(r).update(args=[{"node": "nowhere"}]),
    "unknown arg form": lambda r: _fn(r).update(args=[{"pickle": "gASV"}]),
    "deep nesting": lambda r: _fn(r).update(args=[json.loads("[" * 40 + "]" * 40)]),
    "huge layer": lambda r: r["modules"][0]["kwargs"].update(in_features=10**12),
    "negative size": lambda r: r["modules"][0]["kwargs"].update(out_features=-5),
    "huge free tensor": lambda r: r["tensors"].append(
        {"name": "big", "shape": [1 << 39, 1 << 39], "dtype": "float32", "parameter": True}),
    "string arg where a list goes": lambda r: r["modules"][0]["kwargs"].update(bias="yes" * 40),
    "no output": lambda r: r["nodes"].pop(),
    "nodes not a list": lambda r: r.update(nodes="x"),
    "wrong version": lambda r: r.update(version=99),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_graph_in_snn_is_refused(tmp_path, mlp_snn, case, capfd):
    path = tmp_path / "h.snn"

    def tamper(header: dict) -> None:
        HOSTILE[case](header["arch"]["graph"])

    path.write_bytes(edit_header(mlp_snn, tamper))
    with pytest.raises(CorruptFileError) as exc:
        sparsenet.load(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "unknown op", "huge layer"])
def test_hostile_graph_in_checkpoint_is_refused(tmp_path, case):
    save_model(MLP(hidden=8), tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    HOSTILE[case](ckpt["arch"]["graph"])
    torch.save(ckpt, tmp_path / "h.pt")
    with pytest.raises(CheckpointError, match="h.pt"):
        load_model(tmp_path / "h.pt")


def test_the_refusal_names_the_bad_target(tmp_path, mlp_snn):
    path = tmp_path / "h.snn"
    path.write_bytes(edit_header(mlp_snn, lambda h: HOSTILE["os.system"](h["arch"]["graph"])))
    with pytest.raises(CorruptFileError, match="'os.system' is not whitelisted"):
        sparsenet.load(path)


# ---------------------------------------------------------------- corrupt checkpoint fields
def _lenet_ckpt(tmp_path: Path) -> dict:
    m = sparsenet.build_model("lenet300", seed=0, in_features=64, hidden=[8])
    from sparsenet.prune import prune

    save_model(prune(m, sparsity=0.5), tmp_path / "m.pt", metadata={"a": 1})
    return torch.load(tmp_path / "m.pt", weights_only=True)


CORRUPT_FIELDS = {
    "arch.kwargs a list": lambda c: c["arch"].update(kwargs=[1, 2]),
    "arch a string": lambda c: c.update(arch="lenet300"),
    "arch.name unknown": lambda c: c["arch"].update(name="os.system"),
    "transforms a string": lambda c: c.update(transforms="mask"),
    "transform entry a list": lambda c: c.update(transforms=[["fc1", "mask"]]),
    "transform naming a missing module": lambda c: c["transforms"][0].update(module="nope"),
    "transform args a list": lambda c: c["transforms"][0].update(args=[1]),
    "transform args missing shape": lambda c: c["transforms"][0].update(args={}),
    "metadata a list": lambda c: c.update(metadata=[1, 2]),
    "state_dict a list": lambda c: c.update(state_dict=[1]),
    "hidden a float": lambda c: c["arch"]["kwargs"].update(hidden=[3e7]),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_FIELDS))
def test_corrupt_checkpoint_fields_give_checkpoint_error(tmp_path, case):
    ckpt = _lenet_ckpt(tmp_path)
    CORRUPT_FIELDS[case](ckpt)
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "c.pt")
    assert "\n" not in str(exc.value)


def test_corrupt_checkpoint_field_via_cli_is_one_line(tmp_path):
    ckpt = _lenet_ckpt(tmp_path)
    ckpt["transforms"] = "mask"
    torch.save(ckpt, tmp_path / "c.pt")
    r = subprocess.run([sys.executable, "-m", "sparsenet", "info", str(tmp_path / "c.pt")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "transforms" in r.stderr


@pytest.mark.parametrize("key,value", [("metadata", [1, 2]), ("transforms", "x"), ("arch", [1])])
def test_snn_header_fields_of_the_wrong_type(tmp_path, mlp_snn, key, value):
    path = tmp_path / "h.snn"
    path.write_bytes(edit_header(mlp_snn, lambda h: h.update({key: value})))
    with pytest.raises(CorruptFileError, match=f"header {key}"):
        sparsenet.load(path)


def test_huge_recorded_layer_allocates_nothing_before_the_shape_check(tmp_path):
    """hidden=[30_000_000] would need 7.7 GB at 64 inputs; under a 3 GB address-space limit
    the load must fail on the shape check, not on memory."""
    ckpt = _lenet_ckpt(tmp_path)
    ckpt["arch"]["kwargs"]["hidden"] = [30_000_000]
    torch.save(ckpt, tmp_path / "big.pt")
    script = textwrap.dedent(f"""
        import resource
        import torch
        from sparsenet.checkpoint import load_model
        from sparsenet.errors import CheckpointError
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        try:
            load_model({str(tmp_path / "big.pt")!r})
        except CheckpointError as exc:
            print("REFUSED", exc)
        """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert "REFUSED" in r.stdout and "does not match the architecture" in r.stdout, r.stderr[-500:]


def test_original_record_still_loads(tmp_path, mlp_snn):
    """The tampering helper itself leaves a valid file valid."""
    path = tmp_path / "ok.snn"
    path.write_bytes(edit_header(mlp_snn, lambda h: copy.deepcopy(h)))
    assert isinstance(sparsenet.load(path), torch.nn.Module)
