"""Recipe prune stages with the calibrated criteria and N:M patterns."""

import pytest

from sparsenet.pipeline import RecipeError, compress, parse_recipe

BASE = "[[stages]]\n[stages.prune]\n"


def test_oneshot_keys_are_validated_and_old_recipes_unchanged():
    r = parse_recipe(BASE + 'method = "sparsegpt"\nsparsity = 0.9\ncalibration = 512\n'
                     'blocksize = 64\ndamp = 0.05\npattern = "2:4"')
    s = r.stages[0].settings
    assert (s["method"], s["calibration"], s["blocksize"], s["damp"], s["pattern"]) == (
        "sparsegpt", 512, 64, 0.05, "2:4")
    alone = parse_recipe(BASE + 'method = "wanda"\npattern = "2:4"').stages[0].settings
    assert "sparsity" not in alone and alone["pattern"] == "2:4"  # 1 - N/M is implied
    old = parse_recipe(BASE + "sparsity = 0.9").stages[0].settings
    assert not {"pattern", "calibration", "blocksize", "damp"} & set(old)  # digests unchanged


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('method = "sparsegpt"\nsparsity = 0.3\npattern = "2:4"', "sparsity: expected a sparsity >= 0.5"),
        ('pattern = "4:2"\nsparsity = 0.9', "pattern: expected"),
        ('pattern = 24\nsparsity = 0.9', "pattern: expected"),
        ('method = "sparsegpt"\nsparsity = 0.9\ncalibration = 0', "calibration: expected an integer"),
        ('method = "gpt"\nsparsity = 0.9', "method: expected one of"),
        ('pattern = "unstructured"', "expected exactly one of"),
        ('pattern = "2:4"\nquality = 1.0', "quality"),
    ],
)
def test_bad_oneshot_keys_name_the_path(body, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(BASE + body)


def test_sparsegpt_prune_stage_runs_in_a_pipeline(tmp_path, digits_data):
    recipe = {"name": "os", "seed": 0, "stages": [
        {"train": {"epochs": 2, "batch_size": 64}},
        {"prune": {"method": "sparsegpt", "sparsity": 0.8, "calibration": 256, "pattern": "1:4"}},
    ]}
    model, rep = compress("lenet300", digits_data, recipe, run_dir=tmp_path / "run", quiet=True,
                          report=False)
    from sparsenet.prune import Pattern, get_mask, prunable_targets, satisfies, sparsity_report

    assert sparsity_report(model)["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert all(satisfies(get_mask(t.module), Pattern(1, 4)) for t in prunable_targets(model))
