"""The budget search (compress(..., "smallest", max_drop=...)): budget, reproducibility, resume."""

import hashlib
import json

import pytest
import torch

import sparsenet.pipeline.search as search_mod
from sparsenet.data import holdout
from sparsenet.errors import SpecError
from sparsenet.models import model_for_dataset
from sparsenet.pipeline import BudgetError, SearchSettings, compress, read_manifest
from sparsenet.pipeline.probe import Probe
from sparsenet.training import TrainConfig, evaluate, fit

# Small and quick: one retraining epoch per move, big steps, few moves.
QUICK = dict(warmup_sparsity=0.5, warmup_iterations=1, prune_step=0.5, min_step=0.25,
             retrain_epochs=1, final_epochs=1, finetune_epochs=1, min_bits=3)


@pytest.fixture(scope="module")
def trained(digits_data):
    """LeNet-300 trained on digits' training images minus the search's validation split."""
    torch.manual_seed(0)
    model = model_for_dataset("lenet300", digits_data.input_shape, digits_data.num_classes)
    part = holdout(digits_data, 120)
    fit(model, part.train, TrainConfig(epochs=8, lr=0.05, batch_size=64, quiet=True))
    return model


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _search(model, data, run_dir, max_drop=2.0, **kw):
    settings = SearchSettings(max_drop=max_drop, **{**QUICK, **kw})
    return compress(model, data, "smallest", run_dir=run_dir, quiet=True, max_drop=max_drop,
                    settings=settings)


def test_budget_met_on_validation_and_recipe_reproduces_the_bytes(tmp_path, trained, digits_data):
    model, rep = _search(trained, digits_data, tmp_path / "run")
    s = rep["search"]
    # the final file's validation accuracy is within the budget, measured independently
    val = holdout(digits_data, s["holdout"]).test
    assert evaluate(model, val)["accuracy"] == pytest.approx(rep["final"]["accuracy"])
    assert rep["final"]["accuracy"] >= s["floor"] - 1e-12
    # it compressed: moves were accepted, and the file is the encoder's
    snn = tmp_path / "run" / "model.snn"
    assert rep["final"]["file_bytes"] == snn.stat().st_size
    assert rep["final"]["compression"] > 8
    # the test set was scored once, at the end, and reported beside validation
    man = read_manifest(tmp_path / "run")
    assert man["test"]["final"] == evaluate(model, digits_data.test)["accuracy"]
    assert rep["final"]["test_accuracy"] == man["test"]["final"]
    # the chosen recipe, run as an ordinary recipe, writes the same bytes
    again = tmp_path / "again.snn"
    compress(trained, digits_data, str(tmp_path / "run" / "recipe.toml"),
             run_dir=tmp_path / "rerun", out=again, quiet=True)
    assert _sha(again) == _sha(snn)
    # the report has the trade-off figure and the per-layer table
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Search for the smallest file" in md and "tradeoff.png" in md
    assert (tmp_path / "run" / "report" / "tradeoff.png").is_file()
    for name, bits in s["bits"].items():
        assert f"| {name} |" in md and 3 <= bits <= 8
    assert not (tmp_path / "run" / "search-probe.snn").exists()


class _Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_file(tmp_path, trained, digits_data, monkeypatch):
    _model, rep = _search(trained, digits_data, tmp_path / "whole")
    calls = {"n": 0}
    real = search_mod.run_recipe

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # the third move's retraining
            raise _Killed()
        return real(*a, **kw)

    monkeypatch.setattr(search_mod, "run_recipe", dying)
    with pytest.raises(_Killed):
        _search(trained, digits_data, tmp_path / "cut")
    monkeypatch.setattr(search_mod, "run_recipe", real)
    # another time budget only changes when to stop: the journal still accepts the search
    settings = SearchSettings(max_drop=2.0, time_budget=10_000, **QUICK)
    _m, rep2 = compress(trained, digits_data, "smallest", run_dir=tmp_path / "cut", quiet=True,
                        max_drop=2.0, settings=settings, resume=True)
    assert _sha(tmp_path / "cut" / "model.snn") == _sha(tmp_path / "whole" / "model.snn")
    assert rep2["search"]["bits"] == rep["search"]["bits"]
    steps = json.loads((tmp_path / "cut" / "search.json").read_text())["steps"]
    assert [s["move"] for s in steps] == [
        s["move"] for s in json.loads((tmp_path / "whole" / "search.json").read_text())["steps"]]


def test_a_budget_no_setting_meets_leaves_no_file(tmp_path, trained, digits_data):
    out = tmp_path / "x.snn"
    with pytest.raises(BudgetError, match="no setting meets --max-drop 0"):
        compress(trained, digits_data, "smallest", run_dir=tmp_path / "run", out=out, quiet=True,
                 max_drop=0.0, settings=SearchSettings(
                     max_drop=0.0, warmup_sparsity=0.0, start_bits={"fc": 1}, min_bits=1,
                     final_epochs=0, finetune_epochs=0))
    assert not out.exists()


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.3", 101])
def test_bad_max_drop_is_refused(bad):
    with pytest.raises(SpecError, match="max_drop"):
        SearchSettings(max_drop=bad)


def test_max_drop_goes_with_the_search_only(tmp_path, digits_data):
    with pytest.raises(SpecError, match="max_drop"):
        compress("lenet300", digits_data, "deep-compression", run_dir=tmp_path, max_drop=0.3)
    with pytest.raises(SpecError, match="needs max_drop"):
        compress("lenet300", digits_data, "smallest", run_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_greedy_allocation_keeps_the_budget(tmp_path, trained, digits_data):
    model, rep = _search(trained, digits_data, tmp_path / "g", allocation="greedy")
    assert rep["final"]["accuracy"] >= rep["search"]["floor"] - 1e-12
    steps = json.loads((tmp_path / "g" / "search.json").read_text())["steps"]
    assert any(s["move"].startswith("prune ") for s in steps)  # per-layer moves, priced


def test_isotonic_fit_is_non_increasing_and_pools_violators():
    fit = search_mod._non_increasing([0.90, 0.91, 0.89, 0.895, 0.88])
    assert all(a >= b - 1e-12 for a, b in zip(fit, fit[1:], strict=False))
    assert fit[0] == pytest.approx(0.905) and fit[1] == pytest.approx(0.905)
    assert fit[2] == pytest.approx(0.8925) and fit[4] == pytest.approx(0.88)


def test_the_budget_is_counted_in_whole_images():
    # 0.3 points of 333 images is 0.999 images: one image may be lost
    assert search_mod._floor(320 / 333, 0.3, 333) == pytest.approx(319 / 333, abs=1e-8)
    assert search_mod._floor(320 / 333, 0.3, 333) < 319 / 333
    # 0.3 points of 5,000 images is 15 images
    assert search_mod._floor(0.9, 0.3, 5000) == pytest.approx(0.897, abs=1e-8)
    assert search_mod._floor(0.9, 0.0, 5000) < 0.9


@pytest.mark.parametrize("differ, accuracy, expected", [
    (0, 0.9, True),        # far below, identical labels: half a budget decides
    (0, 0.99, False),      # within half a budget
    (100, 0.96, False),    # 2·√100/1000 = 2 points of noise: 4 points below is not clear...
    (100, 0.955, True),    # ...4.5 points below is
])
def test_clearly_below_needs_half_a_budget_and_two_standard_errors(differ, accuracy, expected):
    s = object.__new__(search_mod._Search)
    s.s = SearchSettings(max_drop=2.0)
    s.val = (torch.zeros(1000, 1), torch.zeros(1000, dtype=torch.long))
    s.prune_floor = 0.98
    assert s.clearly_below(Probe(accuracy, 0, differ)) is expected


@pytest.mark.parametrize("confidence, floor, expected", [
    (0.5, 0.95, True),                       # no margin: the accuracy as measured
    (0.5, 0.9500001, False),
    (0.9, 0.95 - 1.2816 * 10 / 1000, True),  # z(0.9) · √100 / 1000 = 1.28 points
    (0.9, 0.95 - 1.2815 * 10 / 1000, False),
])
def test_a_point_meets_the_budget_less_z_standard_errors(confidence, floor, expected):
    s = object.__new__(search_mod._Search)
    s.s = SearchSettings(max_drop=2.0, confidence=confidence)
    s.val = (torch.zeros(1000, 1), torch.zeros(1000, dtype=torch.long))
    assert s.meets(Probe(0.95, 0, 100), floor) is expected
    assert s.meets(Probe(0.95, 0, 0), 0.95)  # no image differs: no margin at any confidence


@pytest.mark.parametrize("bad", [0.4, 1.0, float("nan"), "0.9", True])
def test_bad_confidence_is_refused(bad):
    with pytest.raises(SpecError, match="bad confidence .*expected a probability in"):
        SearchSettings(max_drop=0.3, confidence=bad)


def test_a_confident_search_keeps_its_margin_at_every_decision(tmp_path, trained, digits_data):
    """Every accepted rung, bit move and the final point: accuracy − z·√differ/n ≥ budget."""
    _model, rep = _search(trained, digits_data, tmp_path / "c", max_drop=5.0, confidence=0.8)
    journal = json.loads((tmp_path / "c" / "search.json").read_text())
    assert journal["settings"]["confidence"] == 0.8
    n, z = journal["settings"]["holdout"], SearchSettings(max_drop=5.0, confidence=0.8).z
    facts = journal["facts"]
    final = [s for s in journal["steps"] if s["move"].startswith("final")]
    kept = [s for s in journal["steps"] if s["accepted"] and s["move"].startswith("bits")]
    assert kept  # the bits phase moved
    for step in [*kept, *[f for f in final if f["accepted"]]]:
        assert step["accuracy"] - z * step["differ"] ** 0.5 / n >= facts["floor"] - 1e-12
    assert all(step["accepted"] == (step["accuracy"] - z * step["differ"] ** 0.5 / n
                                    >= facts["floor"]) for step in final)
    ladder = facts["ladder"]
    best = ladder["chosen"]
    # the rung kept meets the pruning budget (above the full one) less its margin
    assert best == 0 or ladder["fitted"][best] - z * ladder["differ"][best] ** 0.5 / n >= \
        facts["floor"] - 1e-12
    assert rep["final"]["accuracy"] >= rep["search"]["floor"]


def test_a_journal_from_before_confidence_still_resumes(tmp_path, trained, digits_data):
    """Probe answers without ``differ`` (journals written before it) are asked again and give
    the same answers; the file is the same."""
    _search(trained, digits_data, tmp_path / "r")
    path = tmp_path / "r" / "search.json"
    journal = json.loads(path.read_text())
    assert "confidence" not in journal["settings"]  # 0.5, the default, is not written
    before = _sha(tmp_path / "r" / "model.snn")
    for answer in journal["probes"].values():
        answer.pop("differ", None)
    path.write_text(json.dumps(journal))
    settings = SearchSettings(max_drop=2.0, **QUICK)
    compress(trained, digits_data, "smallest", run_dir=tmp_path / "r", quiet=True, max_drop=2.0,
             settings=settings, resume=True)
    assert _sha(tmp_path / "r" / "model.snn") == before


def test_a_spent_time_budget_stops_every_phase(tmp_path, trained, digits_data):
    """--time-budget: stop searching, then finish. The bits phase used to go on past it."""
    model, rep = _search(trained, digits_data, tmp_path / "t", time_budget=1e-6)
    steps = json.loads((tmp_path / "t" / "search.json").read_text())["steps"]
    moves = [s["move"].split()[0] for s in steps]
    assert moves[0] == "start" and not {"rung", "prune", "bits", "warm"} & set(moves)
    assert set(rep["search"]["bits"].values()) == {6}  # LeNet-300's fc layers' start bits
    assert (tmp_path / "t" / "model.snn").stat().st_size == rep["final"]["file_bytes"]
