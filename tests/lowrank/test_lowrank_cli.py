"""``sparsenet factorize`` and ``sparsenet info`` on a small digits model."""

import json

import pytest

from sparsenet.checkpoint import load_model, save_model
from sparsenet.cli import main
from sparsenet.data import digits
from sparsenet.lowrank import LowRankLinear, factorize, finetune, lowrank_ranks, plan_ranks
from sparsenet.models import build_model
from sparsenet.training import default_config, evaluate, seed_everything


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def digits_model(tmp_path):
    path = tmp_path / "dense.pt"
    save_model(
        build_model("lenet300", seed=0, in_features=64), path, metadata={"dataset": "digits"}
    )
    return str(path)


def test_factorize_energy_finetune_and_info(tmp_path, capsys, digits_model):
    out = str(tmp_path / "f.pt")
    plots = tmp_path / "plots"
    rc, stdout, err = run(
        capsys,
        "factorize",
        digits_model,
        "--energy",
        "0.6",
        "--finetune-epochs",
        "1",
        "--plots",
        str(plots),
        "--out",
        out,
        "--json",
        "--quiet",
    )
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["energy"] == 0.6 and res["finetune_epochs"] == 1
    assert res["params_after"] < res["params_before"]
    # Reference: the same plan, factorisation and fine-tuning epoch through the library (what
    # the CLI does: lr = default lr / 2, seed 0); deterministic on CPU, so equal exactly.
    data = digits()
    ref, _ = load_model(digits_model)
    factorize(ref, plan=plan_ranks(ref, energy=0.6))
    base = default_config("lenet300", "digits")
    seed_everything(0)
    finetune(ref, data.train, base.replace(epochs=1, lr=base.lr / 2, seed=0, quiet=True),
             val=data.test)
    assert res["test_accuracy"] == evaluate(ref, data.test)["accuracy"]
    model, meta = load_model(out)
    ranks = lowrank_ranks(model)
    assert ranks == {r["layer"]: r["rank"] for r in res["layers"] if r["rank"] is not None}
    assert meta["lowrank"]["params_after"] == res["params_after"]
    assert sum(p.numel() for p in model.parameters()) == res["params_after"]
    assert sorted(p.name for p in plots.iterdir()) == [
        f"spectrum_{r['layer']}.png" for r in res["layers"]
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())

    rc, stdout, _ = run(capsys, "info", out, "--json")
    info = json.loads(stdout)
    shown = {
        layer["name"].split(".")[0]: t["rank"]
        for layer in info["layers"]
        for t in layer["transforms"]
        if t["kind"] == "lowrank"
    }
    assert shown == ranks
    rc, stdout, _ = run(capsys, "info", out)
    assert rc == 0 and f"rank={ranks['fc1']}" in stdout


def test_factorize_rank_spec_and_budget(tmp_path, capsys, digits_model):
    out = str(tmp_path / "r.pt")
    rc, stdout, err = run(
        capsys, "factorize", digits_model, "--rank", "fc1=16", "--out", out, "--json", "-q"
    )
    assert rc == 0, err
    model, _ = load_model(out)
    assert isinstance(model.fc1, LowRankLinear) and lowrank_ranks(model) == {"fc1": 16}
    rc, stdout, err = run(
        capsys, "factorize", digits_model, "--budget", "0.2", "--out", out, "--json", "-q"
    )
    res = json.loads(stdout)
    assert rc == 0 and res["params_after"] <= 0.2 * res["params_before"]
    rc, stdout, err = run(capsys, "factorize", digits_model, "--rank", "8", "--out", out, "-q")
    assert rc == 0 and "fc1" in stdout and "total" in stdout and "test accuracy" in stdout


@pytest.mark.parametrize(
    "bad",
    [
        ["--rank", "fc1=abc"],
        ["--rank", "fc1=0"],
        ["--rank", "fc1"],
        ["--rank", "0"],
        ["--rank", "fc9=3"],
        ["--rank", "fc3=11"],
        ["--energy", "0"],
        ["--energy", "1.5"],
        ["--energy", "x"],
        ["--budget", "2"],
        ["--budget", "0.0001"],
        ["--rank", "3", "--energy", "0.9"],
        [],
        ["--rank", "fc1=3", "--layers", "fc1"],
        ["--energy", "0.9", "--layers", "fc1,nope"],
    ],
)
def test_bad_specs_exit_2_one_line(tmp_path, capsys, digits_model, bad):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["factorize", digits_model, *bad, "--out", str(tmp_path / "o.pt")]))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "error" in err and "Traceback" not in err
    assert not (tmp_path / "o.pt").exists()
