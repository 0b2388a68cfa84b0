"""`sparsenet compress --max-drop`: bad input exits 2 with one line and leaves nothing behind."""

import json

import pytest

from sparsenet.cli import main


def run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--max-drop", "-1"], "argument --max-drop: '-1' is not a finite number >= 0"),
        (["--max-drop", "abc"], "argument --max-drop: 'abc' is not a finite number >= 0"),
        (["--max-drop", "nan"], "argument --max-drop: 'nan' is not a finite number >= 0"),
        (["--max-drop", "0.3", "--recipe", "deep-compression"],
         "--max-drop searches for its own recipe; it cannot be combined with --recipe"),
        (["--time-budget", "30m"], "--time-budget goes with --max-drop"),
        (["--max-drop", "0.3", "--time-budget", "0"], "argument --time-budget: '0' is not a duration"),
        (["--max-drop", "0.3", "--time-budget", "soon"], "argument --time-budget: 'soon'"),
        (["--max-drop", "0.3", "--seed", "3"], "--check and --seed go with --recipe"),
        (["--max-drop", "101"], "bad max_drop 101.0; expected accuracy points between 0 and 100"),
        (["--max-drop", "0.3", "--confidence", "1"],
         "argument --confidence: '1' is not a probability in [0.5, 1)"),
        (["--max-drop", "0.3", "--confidence", "0.3"], "'0.3' is not a probability in [0.5, 1)"),
        (["--confidence", "0.9"], "--confidence goes with --max-drop"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, extra, fragment):
    rc, out, err = run(capsys, "compress", "--model", "lenet300", "--data", "digits",
                       "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "m.snn"), *extra)
    assert rc == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.snn").exists()


def test_existing_run_dir_needs_resume_or_force(capsys, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "search.json").write_text("{}")
    rc, _out, err = run(capsys, "compress", "--model", "lenet300", "--data", "digits",
                        "--run-dir", str(tmp_path / "r"), "--max-drop", "0.3")
    assert rc == 2 and "already holds a search; pass --resume" in err
    assert (tmp_path / "r" / "search.json").read_text() == "{}"


@pytest.mark.slow
def test_search_end_to_end_json(capsys, tmp_path):
    rc, out, _err = run(capsys, "compress", "--model", "lenet300", "--data", "digits",
                        "--max-drop", "1", "--time-budget", "60s", "--run-dir", str(tmp_path / "r"),
                        "--out", str(tmp_path / "m.snn"), "--json", "--quiet")
    assert rc == 0
    rep = json.loads(out)
    assert rep["final"]["file_bytes"] == (tmp_path / "m.snn").stat().st_size
    assert rep["final"]["accuracy"] >= rep["search"]["floor"]
    assert (tmp_path / "r" / "recipe.toml").is_file()
