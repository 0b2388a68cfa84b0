import json
import os

import pytest

from sparsenet.cli import main

RECIPE = """
name = "tiny"
seed = 2
model = "lenet300"
data = "digits"

[[stages]]
train = { epochs = 2 }

[[stages]]
share = { weight_bits = 3 }
"""


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "missing.toml"], "missing.toml: no such recipe file"),
        (["run", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["compress", "--recipe", "deep-compression", "--model", "alexnet", "--data", "digits",
          "--run-dir", "{tmp}/r"], "unknown model 'alexnet'"),
        (["compress", "--recipe", "deep-compression", "--model", "lenet300", "--data", "nope",
          "--run-dir", "{tmp}/r"], "unknown dataset 'nope'"),
        (["report", "{tmp}"], "not a run directory"),
        (["run", "{tmp}/bad.toml"], "stages[0].share.weight_bits: expected an integer in [1, 15], got 99"),
        (["run", "{tmp}/tiny.toml", "--seed", "-3"], "argument --seed"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, fragment):
    (tmp_path / "bad.toml").write_text("[[stages]]\nshare = { weight_bits = 99 }\n")
    (tmp_path / "tiny.toml").write_text(RECIPE)
    with pytest.raises(SystemExit) if "--seed" in argv else _nullcontext() as ctx:
        rc, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    if ctx is not None and hasattr(ctx, "value"):
        assert ctx.value.code == 2
        err = capsys.readouterr().err
    else:
        assert rc == 2
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_check_prints_the_normalised_recipe(capsys):
    rc, out, _ = run(capsys, "run", "deep-compression", "--model", "lenet5", "--check")
    assert rc == 0
    assert 'name = "deep-compression-lenet5"' in out and "[stages.prune]" in out


def test_run_recipe_file_then_report_regenerates(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    run_dir = tmp_path / "run"
    rc, out, err = run(capsys, "run", str(recipe), "--run-dir", str(run_dir), "--json", "--quiet")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["data"] == "digits" and rep["complete"]
    assert [s["kind"] for s in rep["stages"]] == ["initial", "train", "share"]
    report_json = run_dir / "report" / "report.json"
    first = json.loads(report_json.read_text())
    os.remove(report_json)
    os.remove(run_dir / "report" / "report.md")
    rc, out, err = run(capsys, "report", str(run_dir))
    assert rc == 0, err
    assert json.loads(report_json.read_text()) == first
    assert (run_dir / "report" / "report.md").read_text().startswith("# Compression report")
    # a second run in the same directory must be told what to do
    rc, _, err = run(capsys, "run", str(recipe), "--run-dir", str(run_dir), "--quiet")
    assert rc == 2 and "--resume" in err
    rc, _, err = run(capsys, "run", str(recipe), "--run-dir", str(run_dir), "--quiet", "--resume")
    assert rc == 0, err


def test_builtin_variant_follows_the_model_file(tmp_path, capsys):
    from sparsenet.checkpoint import save_model
    from sparsenet.models import model_for_dataset

    path = tmp_path / "net.pt"
    save_model(model_for_dataset("lenet5", (1, 8, 8), 10, seed=0), path)
    rc, out, _ = run(capsys, "run", "deep-compression", "--model", str(path), "--check")
    assert rc == 0 and 'name = "deep-compression-lenet5"' in out


def test_compress_recipe_form_writes_the_snn(tmp_path, capsys):
    recipe = tmp_path / "enc.toml"
    recipe.write_text(
        "seed = 1\n[[stages]]\ntrain = { epochs = 1 }\n[[stages]]\nshare = { weight_bits = 3 }\n"
        "[[stages]]\nencode = { coder = 'ans' }\n"
    )
    out = tmp_path / "m.snn"
    rc, stdout, err = run(capsys, "compress", "--recipe", str(recipe), "--model", "lenet300",
                          "--data", "digits", "--out", str(out), "--run-dir",
                          str(tmp_path / "run"), "--json", "--quiet")
    assert rc == 0, err
    rep = json.loads(stdout)
    assert rep["final"]["file_bytes"] == out.stat().st_size
    rc, stdout, _ = run(capsys, "eval", str(out), "--json")
    assert rc == 0 and json.loads(stdout)["test_accuracy"] == rep["final"]["accuracy"]
    # without --recipe, the single-step form still wants its MODEL and --out
    rc, _, err = run(capsys, "compress", "--out", str(out))
    assert rc == 2 and "MODEL" in err and err.count("\n") == 1
