"""Model sources: registry name, checkpoint, .snn, .pt2, package.module:factory + --weights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import fx, nn

import sparsenet
from sparsenet.cli import main
from sparsenet.sources import ModelSourceError, load_model_source, source_kind

ROOT = Path(__file__).parents[1]
USER_MODULE = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 16)
            self.fc2 = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    def make():
        torch.manual_seed(0)
        return Net()

    def broken():
        raise RuntimeError("factory exploded")

    def not_a_module():
        return 42

    NOT_CALLABLE = 3
    """)


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    """A directory holding the user's module ``usernet_<test>``; it is the current directory."""
    name = f"usernet_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path, name
    sys.modules.pop(name, None)


@pytest.fixture()
def weights(user_dir):
    tmp, name = user_dir
    torch.manual_seed(1)
    ref = _user_net(tmp, name)
    for p in ref.parameters():
        p.data.normal_()
    torch.save(ref.state_dict(), tmp / "w.pt")
    return tmp / "w.pt", ref


def _user_net(tmp: Path, name: str) -> nn.Module:
    model, _ = load_model_source(f"{name}:make")
    return model


def test_registry_name_and_weights(tmp_path):
    m, meta = load_model_source("lenet300")
    assert isinstance(m, sparsenet.LeNet300) and meta == {}
    ref = sparsenet.build_model("lenet300", seed=3)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    m, meta = load_model_source("lenet300", weights=tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))
    assert meta["weights"] == str(tmp_path / "w.pt")


def test_checkpoint_and_snn_files(tmp_path):
    m = sparsenet.build_model("lenet300", seed=0, in_features=64)
    sparsenet.save_model(m, tmp_path / "m.pt", metadata={"dataset": "digits"})
    sparsenet.save_snn(m, tmp_path / "m.snn", metadata={"dataset": "digits"})
    x = torch.randn(3, 64)
    for f in ("m.pt", "m.snn"):
        back, meta = load_model_source(tmp_path / f)
        assert meta["dataset"] == "digits" and torch.equal(back(x), m(x))
    assert source_kind(str(tmp_path / "m.snn")) == "snn"


def test_factory_with_weights_loads_them(weights, user_dir):
    wpath, ref = weights
    _, name = user_dir
    m, meta = load_model_source(f"{name}:make", weights=wpath)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(m(x), ref(x)) and meta["source"] == f"{name}:make"


def test_pt2_archive_becomes_ordinary_layers(tmp_path, user_dir):
    tmp, name = user_dir
    m = _user_net(tmp, name).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.export.save(torch.export.export(m, (x,)), tmp / "m.pt2")
    g, _ = load_model_source(tmp / "m.pt2")
    assert isinstance(g, fx.GraphModule) and type(g.fc1) is nn.Linear
    assert torch.equal(g(x), m(x))
    # ... so the library compresses it like any model, and the file describes itself
    from sparsenet.prune import prune

    prune(g, sparsity=0.5)
    sparsenet.save_snn(g, tmp / "g.snn")
    assert torch.equal(sparsenet.load(tmp / "g.snn")(x), g(x))


def _pt2_with(tmp: Path, name: str, edit) -> Path:
    """Rewrite a .pt2 archive's JSON members through ``edit(member_name, obj)``."""
    m = _user_net(tmp, name).eval()
    torch.export.save(torch.export.export(m, (torch.randn(1, 64),)), tmp / "ok.pt2")
    out = tmp / "bad.pt2"
    with zipfile.ZipFile(tmp / "ok.pt2") as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".json"):
                obj = json.loads(data)
                edit(info.filename, obj)
                data = json.dumps(obj).encode()
            zout.writestr(info, data)
    return out


def _pickled_weights(member, obj):
    if member.endswith("weights_config.json"):
        for meta in obj["config"].values():
            meta["use_pickle"] = True


def _opaque_constant(member, obj):
    if member.endswith("constants_config.json"):
        obj["config"] = {"evil": {"path_name": "opaque_obj_0", "use_pickle": True}}


def _unknown_op(member, obj):
    if "/models/" in member:
        obj["graph_module"]["graph"]["nodes"][0]["target"] = "torch.hub.load"


BAD_PT2 = {"pickled weights": (_pickled_weights, "pickled"),
           "opaque constant": (_opaque_constant, "constants"),
           "op outside the table": (_unknown_op, "hub.load is not supported")}


@pytest.mark.parametrize("case", sorted(BAD_PT2))
def test_unsafe_pt2_is_refused_without_unpickling(user_dir, case):
    tmp, name = user_dir
    edit, fragment = BAD_PT2[case]
    path = _pt2_with(tmp, name, edit)
    with pytest.raises(ModelSourceError, match=fragment):
        load_model_source(path)


# ---------------------------------------------------------------- the CLI
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _bad_sources(tmp: Path, name: str) -> dict[str, tuple[list[str], str]]:
    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp / "wrong.pt")
    torch.save(nn.Linear(2, 2), tmp / "module.pt")  # a pickled object, not weights
    torch.save([1, 2], tmp / "list.pt")
    (tmp / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp / "junk.pt2").write_bytes(b"not a zip")
    (tmp / "adir").mkdir()
    sparsenet.save_model(sparsenet.build_model("lenet5"), tmp / "ckpt.pt")
    return {
        "no such model": (["nowhere"], "no such file, not a registry model"),
        "module not importable": (["nosuchpkg.models:make"], "cannot import nosuchpkg.models"),
        "factory missing": ([f"{name}:missing"], "has no attribute missing"),
        "factory not callable": ([f"{name}:NOT_CALLABLE"], "is not callable"),
        "factory raises": ([f"{name}:broken"], "factory exploded"),
        "factory returns no module": ([f"{name}:not_a_module"], "returned a int"),
        "weights do not fit": ([f"{name}:make", "--weights", "wrong.pt"], "do not fit"),
        "weights missing": ([f"{name}:make", "--weights", "nope.pt"], "no such file"),
        "weights are a pickled module": ([f"{name}:make", "--weights", "module.pt"],
                                         "not a weights-only state dict"),
        "weights not a dict": (["lenet300", "--weights", "list.pt"], "not a dict of named"),
        "weights with a checkpoint": (["ckpt.pt", "--weights", "wrong.pt"], "--weights goes with"),
        "junk checkpoint": (["junk.pt"], "not a sparsenet checkpoint"),
        "junk pt2": (["junk.pt2"], "not a torch.export archive"),
        "a directory": (["adir"], "is a directory"),
    }


CASES = ["no such model", "module not importable", "factory missing", "factory not callable",
         "factory raises", "factory returns no module", "weights do not fit", "weights missing",
         "weights are a pickled module", "weights not a dict", "weights with a checkpoint",
         "junk checkpoint", "junk pt2", "a directory"]


@pytest.mark.parametrize("case", CASES)
def test_every_bad_source_is_exit_2_and_one_line(user_dir, capsys, case):
    tmp, name = user_dir
    argv, fragment = _bad_sources(tmp, name)[case]
    rc, _, err = _cli(capsys, "info", *argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err


@pytest.mark.parametrize("command", [
    ["eval", "--data", "digits"], ["info"], ["inspect"], ["prune", "--sparsity", "0.5", "--out", "o.pt"],
    ["share", "--weight-bits", "fc=4", "--out", "o.pt"], ["compress", "--out", "o.snn"],
    ["factorize", "--rank", "4", "--out", "o.pt"],
])
def test_commands_take_a_factory_and_weights(user_dir, weights, capsys, command):
    _, name = user_dir
    wpath, _ = weights
    rc, out, err = _cli(capsys, command[0], f"{name}:make", "--weights", str(wpath),
                        *command[1:], "--quiet")
    assert rc == 0, err
    if "--out" in command:
        out_file = command[command.index("--out") + 1]
        back, _ = load_model_source(out_file)  # written without the class being importable
        assert isinstance(back, nn.Module)


def test_commands_report_bad_weights_alike(user_dir, capsys):
    tmp, name = user_dir
    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp / "wrong.pt")
    for command in (["eval", "--data", "digits"], ["prune", "--sparsity", "0.5", "--out", "o.pt"],
                    ["compress", "--out", "o.snn"], ["inspect"]):
        rc, _, err = _cli(capsys, command[0], f"{name}:make", "--weights", "wrong.pt",
                          *command[1:])
        assert rc == 2 and "do not fit" in err and len(err.strip().splitlines()) == 1, err


def test_run_with_a_factory_source(user_dir, weights, capsys):
    _, name = user_dir
    wpath, _ = weights
    recipe = Path("r.toml")
    recipe.write_text('seed = 0\n[[stages]]\nshare = { weight_bits = 4, finetune_epochs = 0 }\n'
                      '[[stages]]\nencode = { coder = "huffman" }\n')
    rc, _, err = _cli(capsys, "run", str(recipe), "--model", f"{name}:make", "--weights",
                      str(wpath), "--data", "digits", "--run-dir", "run", "--quiet")
    assert rc == 0, err
    assert isinstance(sparsenet.load("run/model.snn"), fx.GraphModule)


def test_bad_source_in_a_real_process_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sparsenet", "info", "nosuchpkg.mod:make"],
                       capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("sparsenet: error: nosuchpkg.mod:make: cannot import")
