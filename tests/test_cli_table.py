"""The CLI table of issue 17: every command x {missing file, directory, empty file, wrong
format, output under a file, unwritable output} exits 2 with one line on stderr and
creates no file."""

from __future__ import annotations

import pytest
from hostile_helpers import assert_one_line_error, cli, digits_checkpoint, tree

from sparsenet.coding import save_snn

INPUT_CASES = ["missing file", "directory", "empty file", "wrong format"]
OUTPUT_CASES = ["output under a file", "unwritable output"]

# command -> (argv with {in} for the input and {out} for the output, valid input, out kind)
COMMANDS = {
    "eval": (["eval", "{in}", "--data", "digits"], "pt", None),
    "info": (["info", "{in}"], "pt", None),
    "inspect": (["inspect", "{in}"], "snn", None),
    "prune": (["prune", "{in}", "--sparsity", "0.5", "--out", "{out}"], "pt", "x.pt"),
    "sensitivity": (["sensitivity", "{in}", "--out", "{out}"], "pt", "sdir"),
    "share": (["share", "{in}", "--out", "{out}"], "pt", "x.pt"),
    "factorize": (["factorize", "{in}", "--rank", "4", "--out", "{out}"], "pt", "x.pt"),
    "compress": (["compress", "{in}", "--out", "{out}"], "pt", "x.snn"),
    "decompress": (["decompress", "{in}", "--out", "{out}"], "snn", "x.pt"),
    "run": (["run", "{in}", "--model", "lenet300", "--data", "digits", "--run-dir", "{out}"],
            "toml", "rdir"),
    "report": (["report", "{in}", "--out", "{out}"], "run", "rep"),
    "train": (["train", "--model", "lenet300", "--data", "{in}", "--out", "{out}"],
              "data", "x.pt"),
    "deepsc": (["deepsc", "--data", "{in}", "--out", "{out}"], "data", "ddir"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_data):
    from sparsenet.checkpoint import load_model

    root = tmp_path_factory.mktemp("table")
    digits_checkpoint(root / "ok.pt", digits_data)
    save_snn(load_model(root / "ok.pt")[0], root / "ok.snn")
    (root / "ok.toml").write_text("[[stages]]\nprune = { sparsity = 0.5 }\n")
    (root / "dir").mkdir()
    (root / "empty").write_bytes(b"")
    (root / "text.pt").write_text("not a model\n")
    return root


def _argv(template, inp, out):
    return [a.replace("{in}", str(inp)).replace("{out}", str(out)) for a in template]


@pytest.mark.parametrize("case", INPUT_CASES + OUTPUT_CASES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_table(files, tmp_path, capsys, command, case):
    template, valid, out_name = COMMANDS[command]
    if case in OUTPUT_CASES and out_name is None:
        pytest.skip(f"{command} writes no file")
    good_in = {"pt": files / "ok.pt", "snn": files / "ok.snn", "toml": files / "ok.toml",
               "run": files / "dir", "data": "digits"}[valid]
    inp = {"missing file": tmp_path / "missing.pt", "directory": files / "dir",
           "empty file": files / "empty", "wrong format": files / "text.pt"}.get(case, good_in)
    # (report and --data take a directory: for them "directory" is one without a run or data)
    out = tmp_path / "o" / (out_name or "unused")
    if case == "output under a file":
        out = files / "text.pt" / (out_name or "x")
    elif case == "unwritable output":
        out = f"/proc/sparsenet-test/{out_name}"
    before = tree(files) | tree(tmp_path)
    rc, _, err = cli(capsys, *_argv(template, inp, out), "-q")
    assert_one_line_error(rc, err)
    assert tree(files) | tree(tmp_path) == before
