import json

import pytest
import torch

from sparsenet.checkpoint import load_model
from sparsenet.models import LeNet300
from sparsenet.pipeline import STAGES, RunError, compress, read_manifest
from sparsenet.pipeline.recipe import validate_recipe

SHARE_ONLY = {
    "seed": 7,
    "stages": [
        {"train": {"epochs": 2, "batch_size": 64}},
        {"share": {"weight_bits": 4, "finetune_epochs": 1}},
    ],
}


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_dir_layout_manifest_and_report(tmp_path, digits_data):
    model, rep = compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True)
    man = read_manifest(tmp_path)
    assert [s["status"] for s in man["stages"]] == ["done", "done"]
    assert (tmp_path / "stages" / "initial.pt").is_file()
    assert (tmp_path / "stages" / "00-train.pt").is_file()
    assert (tmp_path / "stages" / "01-share.pt").is_file()
    for name in ("report.md", "report.json", "accuracy_size.png", "weights_sharing.png",
                 "index_distributions.png"):
        assert (tmp_path / "report" / name).is_file(), name
    # the checkpointed final model is the returned one, and the report's accuracy is its accuracy
    from sparsenet.training import evaluate

    loaded, _ = load_model(tmp_path / "stages" / "01-share.pt")
    _same_state(_state(model), _state(loaded))
    assert rep["final"]["accuracy"] == evaluate(loaded, digits_data.test)["accuracy"]
    assert [s["kind"] for s in rep["stages"]] == ["initial", "train", "share"]
    # 4-bit sharing of a dense fc model: 32 → ~4 bits per weight
    assert 6 < rep["final"]["compression"] < 8
    assert all(lay["weight_bits"] == 4 for lay in rep["layers"])


def test_existing_run_needs_resume_or_force(tmp_path, digits_data):
    compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True, report=False)
    with pytest.raises(RunError, match="--resume"):
        compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True)


class _Boom(Exception):
    pass


def _interrupt_once(monkeypatch, kind, exc):
    real = STAGES[kind]
    calls = {"n": 0}

    def flaky(model, ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            model = real(model, ctx)  # do the work, then die before the checkpoint
            raise exc
        return real(model, ctx)

    monkeypatch.setitem(STAGES, kind, flaky)
    return calls


def _count(monkeypatch, kind):
    real = STAGES[kind]
    calls = {"n": 0}

    def counted(model, ctx):
        calls["n"] += 1
        return real(model, ctx)

    monkeypatch.setitem(STAGES, kind, counted)
    return calls


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), _Boom("disk on fire")])
def test_resume_after_interrupt_equals_uninterrupted(tmp_path, digits_data, monkeypatch, exc):
    ref, _ = compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path / "a", quiet=True,
                      report=False)
    trains = _count(monkeypatch, "train")
    _interrupt_once(monkeypatch, "share", exc)
    with pytest.raises(type(exc)):
        compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path / "b", quiet=True,
                 report=False)
    man = read_manifest(tmp_path / "b")
    assert [s["status"] for s in man["stages"]] == [
        "done", "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"]
    resumed, _ = compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path / "b",
                          quiet=True, resume=True, report=False)
    assert trains["n"] == 1  # the finished train stage was not redone
    _same_state(_state(ref), _state(resumed))


def test_resume_reuses_the_unchanged_prefix_and_force_redoes(tmp_path, digits_data, monkeypatch):
    compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True, report=False)
    trains, shares = _count(monkeypatch, "train"), _count(monkeypatch, "share")
    changed = json.loads(json.dumps(SHARE_ONLY))
    changed["stages"][1]["share"]["weight_bits"] = 3
    _, rep = compress("lenet300", digits_data, changed, run_dir=tmp_path, quiet=True, resume=True,
                      report=False)
    assert (trains["n"], shares["n"]) == (0, 1)
    assert all(lay["weight_bits"] == 3 for lay in rep["layers"])
    compress("lenet300", digits_data, changed, run_dir=tmp_path, quiet=True, resume=True,
             report=False)
    assert (trains["n"], shares["n"]) == (0, 1)  # everything finished: nothing redone
    compress("lenet300", digits_data, changed, run_dir=tmp_path, quiet=True, force=True,
             report=False)
    assert (trains["n"], shares["n"]) == (1, 2)


def test_pretrained_module_skips_train_and_custom_models_work(tmp_path, digits_data):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10))
    recipe = validate_recipe({"stages": [{"train": {"epochs": 3}},
                                         {"share": {"weight_bits": 2, "finetune_epochs": 0}}]})
    before = _state(net)
    model, rep = compress(net, digits_data, recipe, run_dir=tmp_path, quiet=True)
    man = read_manifest(tmp_path)
    assert man["stages"][0]["record"]["skipped"]
    assert rep["stages"][1]["accuracy"] == rep["stages"][0]["accuracy"]  # train was skipped
    assert all(lay["weight_bits"] == 2 for lay in rep["layers"])
    assert not torch.equal(before["1.weight"], model[1].weight)  # shared to 4 values
    assert len(torch.unique(model[1].weight)) <= 4


@pytest.mark.parametrize(
    "stage, message",
    [
        ({"prune": {"per_layer": {"fc9": 0.5}}}, "stages[0].prune.per_layer.fc9: no such layer"),
        ({"share": {"weight_bits": {"fc": 5, "conv7": 4}}}, "stages[0].share.weight_bits.conv7: no such layer"),
        ({"factorize": {"rank": {"fc0": 4}}}, "stages[0].factorize.rank.fc0: no such layer"),
        ({"share": {"weight_bits": {"f*x": 4}}}, "stages[0].share.weight_bits.f*x: no such layer"),
    ],
)
def test_layer_names_are_checked_before_anything_runs(tmp_path, digits_data, stage, message):
    from sparsenet.pipeline import RecipeError

    with pytest.raises(RecipeError) as exc:
        compress("lenet300", digits_data, {"stages": [stage]}, run_dir=tmp_path / "r", quiet=True)
    assert message in str(exc.value) and "fc1, fc2, fc3" in str(exc.value)
    assert not (tmp_path / "r").exists()  # nothing ran, nothing was written


def test_groups_and_globs_in_recipes_pass_the_layer_check():
    from sparsenet.pipeline.recipe import parse_recipe
    from sparsenet.pipeline.runner import check_layer_names

    text = (
        "[[stages]]\nprune = { per_layer = { 'fc*' = 0.5, attention = 0.5 } }\n"
        "[[stages]]\nshare = { weight_bits = { embedding = 4, 'fc[12]' = 3, fc3 = 6 } }\n"
    )
    check_layer_names(parse_recipe(text), LeNet300(in_features=64))


def test_a_shorter_run_keeps_later_stages_reusable(tmp_path, digits_data, monkeypatch):
    """The budget search runs growing recipes into one directory: a run of a prefix leaves
    the later stages' checkpoints and records, and a longer run reuses them untouched."""
    _m, rep = compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True,
                       report=False)
    prefix = {**SHARE_ONLY, "stages": SHARE_ONLY["stages"][:1]}
    compress("lenet300", digits_data, prefix, run_dir=tmp_path, quiet=True, report=False,
             resume=True)
    assert len(read_manifest(tmp_path)["stages"]) == 1
    assert (tmp_path / "stages" / "01-share.json").is_file()

    def boom(model, ctx):
        raise AssertionError("stage recomputed")

    monkeypatch.setitem(STAGES, "share", boom)
    model, rep2 = compress("lenet300", digits_data, SHARE_ONLY, run_dir=tmp_path, quiet=True,
                           report=False, resume=True)
    assert rep2["final"]["accuracy"] == rep["final"]["accuracy"]
    assert [e["status"] for e in read_manifest(tmp_path)["stages"]] == ["done", "done"]
    # a record that does not match its stage (another recipe's) is not reused
    other = {**SHARE_ONLY, "stages": [SHARE_ONLY["stages"][0], {"share": {"weight_bits": 3}}]}
    with pytest.raises(AssertionError, match="stage recomputed"):
        compress("lenet300", digits_data, other, run_dir=tmp_path, quiet=True, report=False,
                 resume=True)
