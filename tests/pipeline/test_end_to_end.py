"""train → prune → share → encode → load on digits, and resume giving the same file bytes."""

import pytest

import sparsenet
from sparsenet.pipeline import STAGES, compress, read_manifest
from sparsenet.prune import DEFAULT_GRID
from sparsenet.training import evaluate

E2E = {
    "name": "e2e",
    "seed": 5,
    "stages": [
        {"train": {"epochs": 3, "batch_size": 64}},
        {"prune": {"per_layer": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "iterations": 2,
                   "retrain_epochs": 1, "sensitivity": True}},
        {"share": {"weight_bits": 4, "finetune_epochs": 1}},
        {"encode": {"coder": "huffman"}},
    ],
}


def test_digits_end_to_end_file_gives_reported_accuracy(tmp_path, digits_data):
    out = tmp_path / "digits.snn"
    model, rep = compress("lenet300", digits_data, E2E, run_dir=tmp_path / "run", out=out,
                          quiet=True)
    assert out.is_file() and rep["final"]["file_bytes"] == out.stat().st_size
    loaded = sparsenet.load(out)
    acc = evaluate(loaded, digits_data.test)["accuracy"]
    assert acc == rep["final"]["accuracy"]  # exactly what the pipeline reported
    share = next(s for s in rep["stages"] if s["kind"] == "share")
    assert acc == share["accuracy"]  # encoding is lossless
    assert acc > 0.5  # and it still classifies digits
    # it is pruned and shared as asked, and much smaller than dense float32
    for lay, target in zip(rep["layers"], (0.9, 0.8, 0.5), strict=True):
        assert lay["density"] <= 1 - target + 1e-3 and lay["weight_bits"] == 4
        assert lay["size_coded"] is not None and lay["size_coded"] < lay["size_pq"] + 0.02
    assert rep["final"]["compression"] > 15
    assert set(rep["sensitivity"]) and rep["figures"]["sensitivity"] == "sensitivity.png"
    # the stage scans the same grid as `sparsenet sensitivity`
    assert all([p for p, _ in c] == list(DEFAULT_GRID) for c in rep["sensitivity"].values())
    for name in ("report.md", "report.json", "weights_sharing.png", "index_distributions.png",
                 "sensitivity.png", "accuracy_size.png"):
        assert (tmp_path / "run" / "report" / name).is_file()


@pytest.mark.parametrize("kind", ["prune", "encode"])
def test_resume_after_killed_stage_gives_same_file_bytes(tmp_path, digits_data, monkeypatch, kind):
    ref = tmp_path / "ref.snn"
    compress("lenet300", digits_data, E2E, run_dir=tmp_path / "a", out=ref, quiet=True,
             report=False)
    real = STAGES[kind]

    def killed(model, ctx):
        real(model, ctx)
        raise KeyboardInterrupt  # Ctrl-C after the work, before the checkpoint

    monkeypatch.setitem(STAGES, kind, killed)
    out = tmp_path / "resumed.snn"
    with pytest.raises(KeyboardInterrupt):
        compress("lenet300", digits_data, E2E, run_dir=tmp_path / "b", out=out, quiet=True,
                 report=False)
    statuses = [s["status"] for s in read_manifest(tmp_path / "b")["stages"]]
    assert statuses[-1] == "interrupted"
    monkeypatch.setitem(STAGES, kind, real)
    calls = {"train": 0}
    real_train = STAGES["train"]

    def counted(model, ctx):
        calls["train"] += 1
        return real_train(model, ctx)

    monkeypatch.setitem(STAGES, "train", counted)
    compress("lenet300", digits_data, E2E, run_dir=tmp_path / "b", out=out, quiet=True,
             resume=True, report=False)
    assert calls["train"] == 0
    assert out.read_bytes() == ref.read_bytes()


def test_every_stage_kind_composes(tmp_path, digits_data):
    recipe = {
        "seed": 2,
        "stages": [
            {"train": {"epochs": 2}},
            {"regularize": {"l1": 1e-4, "epochs": 1}},
            {"factorize": {"rank": {"fc1": 16, "fc2": 16}, "finetune_epochs": 1}},
            {"prune": {"sparsity": 0.5, "retrain_epochs": 1, "lr_factor": 0.5}},
            {"share": {"weight_bits": 4, "finetune_epochs": 1}},
            {"encode": {"coder": "ans"}},
        ],
    }
    out = tmp_path / "all.snn"
    _, rep = compress("lenet300", digits_data, recipe, run_dir=tmp_path / "run", out=out,
                      quiet=True, report=False)
    assert [s["kind"] for s in rep["stages"]][1:] == [
        "train", "regularize", "factorize", "prune", "share", "encode"]
    names = [lay["name"] for lay in rep["layers"]]
    assert "fc1.0" in names and "fc1.1" in names  # the low-rank factors are ordinary layers
    assert all(lay["weight_bits"] == 4 for lay in rep["layers"])
    factorized = next(s for s in rep["stages"] if s["kind"] == "factorize")
    assert factorized["compression"] > 1.3  # measured against the dense model it started from
    assert rep["final"]["compression"] == pytest.approx(
        rep["baseline"]["dense_bytes"] / out.stat().st_size)
    loaded = sparsenet.load(out)
    assert evaluate(loaded, digits_data.test)["accuracy"] == rep["final"]["accuracy"]


def test_per_layer_targets_follow_a_factorized_layer(tmp_path, digits_data):
    """A target named for fc1 applies to both low-rank factors fc1.0 and fc1.1."""
    recipe = {
        "seed": 1,
        "stages": [
            {"train": {"epochs": 1}},
            {"factorize": {"rank": {"fc1": 16}}},
            {"prune": {"per_layer": {"fc1": 0.75, "fc2": 0.5}}},
        ],
    }
    model, rep = compress("lenet300", digits_data, recipe, run_dir=tmp_path / "run",
                          quiet=True, report=False)
    density = {lay["name"]: lay["density"] for lay in rep["layers"]}
    assert density["fc1.0"] == pytest.approx(0.25, abs=0.01)
    assert density["fc1.1"] == pytest.approx(0.25, abs=0.01)
    assert density["fc2"] == pytest.approx(0.5, abs=0.01) and density["fc3"] == 1.0
