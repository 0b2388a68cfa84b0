"""weight_bits / gap_bits: the new names give the same bytes; the old ones still work, warned."""

import copy

import pytest

from sparsenet.checkpoint import save_model
from sparsenet.cli import main
from sparsenet.coding import read_snn, save_snn
from sparsenet.errors import SpecError
from sparsenet.models import build_model
from sparsenet.prune import prune
from sparsenet.share import share_weights


def test_save_snn_old_names_write_the_same_bytes(tmp_path, lenet300_digits):
    new, old = tmp_path / "new.snn", tmp_path / "old.snn"
    save_snn(lenet300_digits, new, weight_bits="fc=5", gap_bits="auto")
    with pytest.warns(DeprecationWarning, match="save_snn.bits=.... is deprecated; use weight_bits"):
        save_snn(lenet300_digits, old, bits="fc=5", gap_bits="auto")
    assert old.read_bytes() == new.read_bytes()
    with pytest.warns(DeprecationWarning, match="index_bits"):
        save_snn(lenet300_digits, old, weight_bits="fc=5", index_bits="auto")
    assert old.read_bytes() == new.read_bytes()
    # the file format keeps its header field names
    assert {"bits", "index_bits"} <= set(read_snn(new).header["layers"][0])
    with pytest.raises(SpecError, match="got both"):
        save_snn(lenet300_digits, old, weight_bits=5, bits=5)


def test_share_weights_old_name_warns_and_agrees():
    torch_model = prune(build_model("lenet300", seed=0, in_features=64), sparsity=0.8)
    a, b = copy.deepcopy(torch_model), copy.deepcopy(torch_model)
    share_weights(a, weight_bits="fc=3")
    with pytest.warns(DeprecationWarning, match="share_weights"):
        share_weights(b, bits="fc=3")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and va.equal(vb)


def test_cli_old_flags_are_hidden_aliases(tmp_path, lenet300_digits, capsys):
    src = tmp_path / "m.pt"
    save_model(lenet300_digits, src)
    new, old = tmp_path / "new.snn", tmp_path / "old.snn"
    assert main(["compress", str(src), "--weight-bits", "fc=5", "--gap-bits", "auto",
                 "--out", str(new), "--quiet"]) == 0
    assert main(["compress", str(src), "--bits", "fc=5", "--index-bits", "auto",
                 "--out", str(old), "--quiet"]) == 0
    assert old.read_bytes() == new.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = capsys.readouterr().out
    assert "--weight-bits" in text and "--gap-bits" in text
    assert "--index-bits" not in text and "--bits " not in text
