"""Knowledge distillation (``sparsenet.training.distill``) and its recipe keys."""

import copy

import pytest
import torch
import torch.nn.functional as F

from sparsenet.errors import SparsenetError
from sparsenet.models import model_for_dataset
from sparsenet.pipeline import compress, read_manifest
from sparsenet.pipeline.recipe import RecipeError, validate_recipe
from sparsenet.training import TrainConfig, fit, logits
from sparsenet.training.callbacks import TrainState
from sparsenet.training.distill import Distill

CFG = TrainConfig(epochs=3, batch_size=64, lr=0.05, quiet=True, seed=1)


def _model(data, seed=0):
    return model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=seed)


def _state(model, x):
    st = TrainState(model, CFG, None, None)  # type: ignore[arg-type]
    st.x, st.logits = x, model(x)
    return st


def test_penalty_is_the_scaled_kl_and_zero_for_the_teacher_itself(digits_data):
    x = digits_data.x_train[:32]
    teacher, student = _model(digits_data, 0), _model(digits_data, 1)
    d = Distill(teacher, weight=0.5, temperature=3.0)
    got = d.penalty(_state(student, x))
    with torch.no_grad():
        p = F.softmax(teacher(x) / 3, 1)
        q = F.softmax(student(x) / 3, 1)
        ref = 0.5 * 9 * (p * (p.log() - q.log())).sum(1).mean()
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    same = Distill(teacher).penalty(_state(copy.deepcopy(teacher), x))
    assert abs(float(same.detach())) < 1e-6
    assert Distill(teacher, weight=0).penalty(_state(student, x)) is None


def test_teacher_is_a_frozen_copy(digits_data):
    teacher = _model(digits_data)
    d = Distill(teacher)
    with torch.no_grad():
        teacher.fc1.weight.zero_()
    assert not torch.equal(d.teacher.fc1.weight, teacher.fc1.weight)
    assert not any(p.requires_grad for p in d.teacher.parameters())
    assert not d.teacher.training


def test_distilled_student_agrees_more_with_its_teacher(digits_data):
    teacher = _model(digits_data, 0)
    fit(teacher, digits_data.train, CFG)
    # the student sees only a quarter of the labels: the teacher fills in the rest
    few = (digits_data.x_train[:300], digits_data.y_train[:300])
    plain, taught = _model(digits_data, 2), _model(digits_data, 2)
    fit(plain, few, CFG)
    fit(taught, few, CFG, callbacks=[Distill(teacher, weight=4.0, temperature=2.0)])
    x = digits_data.x_test
    ref = logits(teacher, x).argmax(1)
    agree = [float((logits(m, x).argmax(1) == ref).float().mean()) for m in (plain, taught)]
    assert agree[1] > agree[0]


@pytest.mark.parametrize("weight, temperature, bad", [
    (-1.0, 4.0, "weight -1.0"), (float("nan"), 4.0, "weight nan"), (1.0, 0.0, "temperature 0.0"),
    ("1", 4.0, "weight '1'"), (True, 4.0, "weight True"),
])
def test_bad_options_name_the_value(digits_data, weight, temperature, bad):
    with pytest.raises(SparsenetError, match=bad):
        Distill(_model(digits_data), weight, temperature)


def test_mismatched_teacher_outputs_are_refused(digits_data):
    x = digits_data.x_train[:8]
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))
    with pytest.raises(SparsenetError, match=r"shape \(8, 7\).*\(8, 10\)"):
        Distill(wide).penalty(_state(_model(digits_data), x))


def test_recipe_keys_are_checked():
    ok = validate_recipe({"stages": [{"prune": {"sparsity": 0.5, "distill": 1.0,
                                                "distill_temperature": 2.0}}]})
    assert ok.stages[0].settings["distill"] == 1.0
    # unset keys stay out of the normalised recipe (old recipes keep their digests)
    plain = validate_recipe({"stages": [{"share": {"weight_bits": 4}}]})
    assert "distill" not in plain.stages[0].settings
    with pytest.raises(RecipeError, match="distill"):
        validate_recipe({"stages": [{"prune": {"sparsity": 0.5, "distill": -1}}]})
    with pytest.raises(RecipeError, match="distill_temperature"):
        validate_recipe({"stages": [{"share": {"weight_bits": 4, "distill_temperature": 0}}]})


def test_runner_distills_from_the_trained_dense_model(tmp_path, digits_data, monkeypatch):
    seen = []
    orig = Distill.__init__

    def spy(self, teacher, weight=1.0, temperature=4.0):
        seen.append((copy.deepcopy(teacher.state_dict()), weight, temperature))
        orig(self, teacher, weight, temperature)

    monkeypatch.setattr(Distill, "__init__", spy)
    recipe = {"seed": 3, "stages": [
        {"train": {"epochs": 2, "batch_size": 64}},
        {"prune": {"sparsity": 0.6, "retrain_epochs": 1, "distill": 2.0,
                   "distill_temperature": 3.0}},
        {"share": {"weight_bits": 4, "finetune_epochs": 1, "distill": 1.0}},
    ]}
    compress("lenet300", digits_data, recipe, run_dir=tmp_path, quiet=True, report=False)
    from sparsenet.checkpoint import load_model

    dense, _ = load_model(tmp_path / "stages" / "00-train.pt")
    assert [(w, t) for _, w, t in seen] == [(2.0, 3.0), (1.0, 4.0)]
    for state, _, _ in seen:  # both stages were taught by the train stage's model
        for k, v in dense.state_dict().items():
            assert torch.equal(state[k], v), k
    assert read_manifest(tmp_path)["stages"][1]["settings"]["distill"] == 2.0
