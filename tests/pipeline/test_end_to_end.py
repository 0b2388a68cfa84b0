"""train → prune → share → encode → load on digits, and resume giving the same file bytes."""

import pytest

pytest.importorskip("sparsenet.prune")
coding = pytest.importorskip("sparsenet.coding")

from sparsenet.pipeline import STAGES, compress, read_manifest  # noqa: E402
from sparsenet.training import evaluate  # noqa: E402

E2E = {
    "name": "e2e",
    "seed": 5,
    "stages": [
        {"train": {"epochs": 3, "batch_size": 64}},
        {"prune": {"per_layer": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "iterations": 2,
                   "retrain_epochs": 1, "sensitivity": True}},
        {"share": {"bits": 4, "finetune_epochs": 1}},
        {"encode": {"coder": "huffman"}},
    ],
}


def test_digits_end_to_end_file_gives_reported_accuracy(tmp_path, digits_data):
    out = tmp_path / "digits.snn"
    model, rep = compress("lenet300", digits_data, E2E, run_dir=tmp_path / "run", out=out,
                          quiet=True)
    assert out.is_file() and rep["final"]["file_bytes"] == out.stat().st_size
    loaded = coding.load_snn(out)
    acc = evaluate(loaded, *digits_data.test)["accuracy"]
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
