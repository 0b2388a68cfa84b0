import json
import os

import pytest

from sparsenet.cli import main
from sparsenet.data import digits
from sparsenet.models import model_for_dataset
from sparsenet.training import default_config, evaluate, fit, seed_everything


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_eval_info_json(tmp_path, capsys):
    out_path = str(tmp_path / "m.pt")
    rc, out, err = run(
        capsys,
        "train",
        "--model",
        "lenet300",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--out",
        out_path,
        "--json",
        "--quiet",
    )
    assert rc == 0, err
    res = json.loads(out)
    # Reference: the same two epochs through the library (the CLI seeds, builds and trains
    # exactly so), then its test accuracy; deterministic on CPU, so equal exactly.
    data = digits()
    seed_everything(0)
    ref = model_for_dataset("lenet300", data.input_shape, data.num_classes, seed=0)
    cfg = default_config("lenet300", "digits").replace(epochs=2, seed=0, quiet=True)
    fit(ref, data.train, cfg, val=data.test)
    assert res["epochs"] == 2
    assert res["test_accuracy"] == evaluate(ref, data.test)["accuracy"]
    rc, out, _ = run(capsys, "eval", out_path, "--json")
    assert rc == 0 and json.loads(out)["test_accuracy"] == res["test_accuracy"]
    rc, out, _ = run(capsys, "info", out_path, "--json")
    info = json.loads(out)
    assert rc == 0 and info["weights"] == 64 * 300 + 300 * 100 + 100 * 10
    assert [layer["name"] for layer in info["layers"]] == ["fc1", "fc2", "fc3"]
    assert info["file_bytes"] == os.path.getsize(out_path)
    rc, out, _ = run(capsys, "info", out_path)
    assert "fc1" in out and "total" in out


def test_train_resume_finished_run(tmp_path, capsys):
    out_path = str(tmp_path / "m.pt")
    args = [
        "train",
        "--model",
        "lenet300",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        out_path,
        "--quiet",
        "--json",
    ]
    assert run(capsys, *args)[0] == 0
    rc, out, _ = run(capsys, *args, "--resume")
    assert rc == 0 and json.loads(out)["epochs"] == 1


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["eval", "/nonexistent/model.pt"], "no such file"),
        (["train", "--model", "alexnet", "--out", "x.pt"], "unknown model 'alexnet'"),
        (
            ["train", "--model", "lenet300", "--data", "imagenet", "--out", "x.pt"],
            "unknown dataset 'imagenet'",
        ),
        (
            ["train", "--model", "lenet300", "--epochs", "-3", "--out", "x.pt"],
            "'-3' is not an integer >= 0",
        ),
        (["info", "/"], "is a directory"),
    ],
)
def test_bad_input_exit_2_one_line(capsys, argv, fragment):
    with (
        pytest.raises(SystemExit)
        if argv[:4] == ["train", "--model", "lenet300", "--epochs"]
        else _nullcontext() as ctx
    ):
        rc, out, err = run(capsys, *argv)
    if ctx is not None and hasattr(ctx, "value"):
        rc = ctx.value.code
        err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_random_bytes_file(tmp_path, capsys):
    p = tmp_path / "junk.pt"
    p.write_bytes(os.urandom(4096))
    rc, _, err = run(capsys, "eval", str(p))
    assert rc == 2 and "not a sparsenet checkpoint" in err and len(err.strip().splitlines()) == 1


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_info_names_parametrised_layer_by_its_base_type(tmp_path, capsys):
    from sparsenet.checkpoint import save_model
    from sparsenet.models import build_model
    from sparsenet.share import share_weights

    m = share_weights(build_model("lenet300", seed=0, in_features=64), weight_bits="fc=3")
    save_model(m, tmp_path / "s.pt")
    rc, out, _ = run(capsys, "info", str(tmp_path / "s.pt"), "--json")
    assert rc == 0
    assert [layer["type"] for layer in json.loads(out)["layers"]] == ["Linear"] * 3
