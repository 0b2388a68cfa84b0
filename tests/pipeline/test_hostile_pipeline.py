"""Regression tests for issue 17 (hostile and careless use): runs, recipes, manifests, reports."""

from __future__ import annotations

import json
import shutil

import pytest
from hostile_helpers import assert_one_line_error, cli, digits_checkpoint, tree

from sparsenet.pipeline import compress
from sparsenet.pipeline.runner import MANIFEST, _remove_run_files

PRUNE_ENCODE = '[[stages]]\nprune = { sparsity = 0.5 }\n\n[[stages]]\nencode = {}\n'
FACTORIZE_ENCODE = '[[stages]]\nfactorize = { rank = 4 }\n\n[[stages]]\nencode = {}\n'


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits_data):
    """A finished prune -> encode run (no share stage) of a digits lenet300 in run/."""
    root = tmp_path_factory.mktemp("hostile-run")
    digits_checkpoint(root / "d.pt", digits_data)
    (root / "pe.toml").write_text(PRUNE_ENCODE)
    (root / "fe.toml").write_text(FACTORIZE_ENCODE)
    _, rep = compress(str(root / "d.pt"), digits_data, str(root / "pe.toml"),
                      run_dir=root / "run", quiet=True)
    return root, rep


def test_item_05_no_share_stage_report(finished, capsys):
    root, rep = finished
    assert rep["complete"] and rep["final"]["file_bytes"] > 0
    assert all(lay["size_entropy"] > 0 for lay in rep["layers"])
    rc, out, err = cli(capsys, "report", root / "run")
    assert rc == 0, err
    assert (root / "run" / "report" / "report.md").is_file()


def test_item_05_factorize_then_encode(finished, digits_data):
    root, _ = finished
    _, rep = compress(str(root / "d.pt"), digits_data, str(root / "fe.toml"),
                      run_dir=root / "run-fe", quiet=True, report=False)
    assert rep["complete"] and len(rep["layers"]) >= 3


def test_item_02_resume_with_other_recipe_touches_nothing(finished, capsys):
    root, _ = finished
    (root / "other.toml").write_text('[[stages]]\nprune = { sparsity = 0.8 }\n')
    before = {p: (root / "run" / p).read_bytes() for p in (MANIFEST, "recipe.toml")}
    files = tree(root / "run")
    rc, _, err = cli(capsys, "run", root / "other.toml", "--model", root / "d.pt", "--data",
                     "digits", "--run-dir", root / "run", "--resume", "-q")
    assert_one_line_error(rc, err, "holds a run of another recipe")
    assert {p: (root / "run" / p).read_bytes() for p in before} == before
    assert tree(root / "run") == files


def test_item_01_force_deletes_only_run_files(tmp_path):
    d = tmp_path / "d"
    (d / "stages").mkdir(parents=True)
    for name in ("initial.pt", "00-prune.pt", "mine.txt"):
        (d / "stages" / name).write_text("user data")
    _remove_run_files(d)  # no manifest: nothing here was written by a run
    assert sorted(p.name for p in (d / "stages").iterdir()) == ["00-prune.pt", "initial.pt",
                                                                "mine.txt"]
    (d / MANIFEST).write_text("{}")
    _remove_run_files(d)
    assert [p.name for p in (d / "stages").iterdir()] == ["mine.txt"]
    assert not (d / MANIFEST).exists()


def test_item_04_report_of_missing_dir_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "report", "nope_dir")
    assert_one_line_error(rc, err, "nope_dir")
    rc, _, err = cli(capsys, "report", ".")  # a directory without a manifest
    assert_one_line_error(rc, err, "not a run directory")
    assert tree(tmp_path) == set()


def test_item_06_outputs_checked_before_work(finished, tmp_path, capsys):
    root, _ = finished
    rc, _, err = cli(capsys, "run", root / "pe.toml", "--model", root / "d.pt", "--data",
                     "digits", "--run-dir", tmp_path / "r", "--out", "/proc/x.snn")
    assert_one_line_error(rc, err, "/proc/x.snn")
    assert not (tmp_path / "r").exists()
    rc, _, err = cli(capsys, "deepsc", "--data", "digits", "--out", "/proc/dd")
    assert_one_line_error(rc, err, "/proc/dd")


def test_item_07_run_with_model_that_does_not_fit(finished, tmp_path, capsys):
    root, _ = finished
    rc, _, err = cli(capsys, "run", root / "pe.toml", "--model", root / "d.pt", "--data",
                     "mnist", "--run-dir", tmp_path / "r")
    assert_one_line_error(rc, err, "does not fit data set 'mnist'")
    assert not (tmp_path / "r").exists()  # no stages/initial.pt without a manifest


def test_item_09_recipe_not_utf8(tmp_path, capsys):
    (tmp_path / "r.toml").write_bytes(b'name = "\xff\xfe"\n')
    rc, _, err = cli(capsys, "run", tmp_path / "r.toml", "--check")
    assert_one_line_error(rc, err, "not a UTF-8 text file")


def test_item_10_seed_overflow(tmp_path, capsys):
    (tmp_path / "r.toml").write_text(f"seed = {2**64}\n[[stages]]\nprune = {{ sparsity = 0.5 }}\n")
    rc, _, err = cli(capsys, "run", tmp_path / "r.toml", "--check")
    assert_one_line_error(rc, err, "recipe.seed")
    (tmp_path / "ok.toml").write_text("[[stages]]\nprune = { sparsity = 0.5 }\n")
    rc, _, err = cli(capsys, "run", tmp_path / "ok.toml", "--check", "--seed", str(2**64))
    assert_one_line_error(rc, err, "--seed")


@pytest.mark.parametrize("case", ["no initial", "stages: [1]", "bytes: 0", "string index"])
def test_item_12_corrupt_manifest(finished, tmp_path, capsys, case):
    root, _ = finished
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    man = json.loads((run / MANIFEST).read_text())
    if case == "no initial":
        del man["initial"]
    elif case == "stages: [1]":
        man["stages"] = [1]
    elif case == "bytes: 0":
        man["stages"][0]["metrics"]["bytes"] = 0
    else:
        man["stages"][1]["index"] = "1"
    (run / MANIFEST).write_text(json.dumps(man))
    rc, _, err = cli(capsys, "report", run)
    assert_one_line_error(rc, err, "corrupt manifest")
    rc, _, err = cli(capsys, "run", root / "pe.toml", "--model", root / "d.pt", "--data",
                     "digits", "--run-dir", run, "--resume", "-q")
    assert_one_line_error(rc, err, "corrupt manifest")


def test_item_18_compress_recipe_uses_recipe_model_and_data(tmp_path, capsys, monkeypatch):
    import sparsenet.pipeline as pipeline

    seen = {}

    def fake(model, data, recipe, **kw):
        seen.update(model=model, data=data)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "compress", fake)
    (tmp_path / "tiny.toml").write_text(
        'model = "lenet300"\ndata = "digits"\n[[stages]]\nprune = { sparsity = 0.5 }\n')
    rc, _, err = cli(capsys, "compress", "--recipe", tmp_path / "tiny.toml",
                     "--run-dir", tmp_path / "r")
    assert rc == 0, err
    assert seen == {"model": "lenet300", "data": "digits"}
    rc, _, err = cli(capsys, "compress", "--recipe", tmp_path / "tiny.toml", "--model",
                     "lenet5", "--run-dir", tmp_path / "r")
    assert seen == {"model": "lenet5", "data": "digits"}
