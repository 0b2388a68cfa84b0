import pytest
import torch
from layer_zoo import Zoo
from torch import nn
from torch.nn.utils import parametrize

from sparsenet.errors import SpecError
from sparsenet.layers import (
    GROUPS,
    MAX_BITS,
    MIN_BITS,
    bias_key,
    compressible_tensors,
    is_inside_parametrization,
    layer_kind,
    lookup,
    match,
    name_of_key,
    parse_bits_spec,
    parse_sparsity_spec,
    resolve_table,
    select,
)
from sparsenet.models import LeNet5, LeNet300, count_weights
from sparsenet.prune import apply_mask

ZOO_NAMES = {
    "emb": "embedding",
    "conv": "conv",
    "dw": "conv",
    "up": "conv",
    "attn.in_proj_weight": "attention",
    "attn.out_proj": "attention",
    "cross.q_proj_weight": "attention",
    "cross.k_proj_weight": "attention",
    "cross.v_proj_weight": "attention",
    "cross.out_proj": "attention",
    "blocks.0.attn.in_proj_weight": "attention",
    "blocks.0.attn.out_proj": "attention",
    "blocks.0.fc": "fc",
    "blocks.1.attn.in_proj_weight": "attention",
    "blocks.1.attn.out_proj": "attention",
    "blocks.1.fc": "fc",
    "head": "fc",
}


def test_every_layer_type_found_once_with_its_kind():
    m = Zoo()
    ts = compressible_tensors(m)
    assert {t.name: t.kind for t in ts} == ZOO_NAMES
    assert [t.name for t in ts] == list(ZOO_NAMES)  # module order, each once
    # every tensor is the module's own, under its state-dict key
    sd = m.state_dict()
    for t in ts:
        assert t.value is sd[t.key] or torch.equal(t.value, sd[t.key])
        assert getattr(t.module, t.tensor) is t.value
    # MHA's out_proj is a Linear, but it is attention and listed once
    assert isinstance(m.attn.out_proj, nn.Linear)
    assert sum(t.module is m.attn.out_proj for t in ts) == 1
    # norm layers and biases are not compressible
    assert not any(t.module is m.norm for t in ts)
    assert count_weights(m) == sum(t.value.numel() for t in ts)


def test_names_are_backward_compatible():
    assert [t.name for t in compressible_tensors(LeNet5())] == ["conv1", "conv2", "fc1", "fc2"]
    assert [t.key for t in compressible_tensors(LeNet300())] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert count_weights(LeNet300()) == 266_200
    assert name_of_key("fc1.weight") == "fc1" and name_of_key("attn.in_proj_weight") == "attn.in_proj_weight"
    assert bias_key("fc1.weight") == "fc1.bias" and bias_key("a.in_proj_weight") == "a.in_proj_bias"
    assert bias_key("a.q_proj_weight") is None


def test_layer_kind_and_biases():
    assert layer_kind(nn.Linear(2, 2)) == "fc"
    assert layer_kind(nn.ConvTranspose3d(2, 2, 1)) == "conv"
    assert layer_kind(nn.EmbeddingBag(5, 2)) == "embedding"
    assert layer_kind(nn.MultiheadAttention(4, 1)) is None  # its tensors are found by the walk
    assert layer_kind(nn.LayerNorm(3)) is None
    m = Zoo()
    by = {t.name: t for t in compressible_tensors(m)}
    assert by["attn.in_proj_weight"].bias is m.attn.in_proj_bias
    assert by["head"].bias is m.head.bias and by["emb"].bias is None


def test_transposed_conv_out_major():
    up = nn.ConvTranspose2d(6, 4, 3, groups=2)  # weight (6, 2, 3, 3)
    t = compressible_tensors(up)[0]
    assert t.name == "weight" and t.transposed and t.value.shape == (6, 2, 3, 3)
    w = t.out_major()
    assert w.shape == (4, 3, 3, 3)
    # row o is output channel o: zeroing it must silence exactly that output channel
    x = torch.randn(1, 6, 5, 5)
    for o in range(4):
        with torch.no_grad():
            ref = up(x)
            keep = torch.ones_like(w)
            keep[o] = 0
            # map the out-major mask back: invert the reshape/transposes of out_major
            g, cin_g, cout_g = 2, 3, 2
            back = keep.reshape(g, cout_g, cin_g, 3, 3).transpose(1, 2).reshape(6, 2, 3, 3)
            y = nn.functional.conv_transpose2d(x, up.weight * back, up.bias, groups=2)
        assert torch.equal(y[:, o], up.bias[o].expand_as(y[:, o]))
        others = [c for c in range(4) if c != o]
        assert torch.allclose(y[:, others], ref[:, others])
    lin = compressible_tensors(nn.Linear(3, 2))[0]
    assert lin.out_major() is lin.value


def test_parametrized_detection_and_values_through_masks():
    m = Zoo()
    apply_mask(m.attn, torch.zeros_like(m.attn.in_proj_weight, dtype=torch.bool), "in_proj_weight")
    apply_mask(m.dw, torch.zeros_like(m.dw.weight, dtype=torch.bool))
    by = {t.name: t for t in compressible_tensors(m)}
    assert list(by) == list(ZOO_NAMES)  # nothing inside parametrizations is listed
    assert by["attn.in_proj_weight"].parametrized and by["dw"].parametrized
    assert not by["attn.out_proj"].parametrized and not by["head"].parametrized
    assert int(by["attn.in_proj_weight"].value.count_nonzero()) == 0  # the effective tensor
    assert by["dw"].key == "dw.weight"
    assert is_inside_parametrization("dw.parametrizations.weight.0")
    assert is_inside_parametrization("parametrizations.weight")
    assert not is_inside_parametrization("parametrizations_x.fc")
    assert parametrize.is_parametrized(m.attn, "in_proj_weight")


def test_select_groups_names_and_globs():
    m = Zoo()
    names = lambda spec: [t.name for t in select(m, spec)]  # noqa: E731
    assert names("fc") == ["blocks.0.fc", "blocks.1.fc", "head"]
    assert names("embedding") == ["emb"]
    assert names("conv") == ["conv", "dw", "up"]
    assert len(names("attention")) == 10
    assert names("all") == list(ZOO_NAMES) == names(None)
    assert names("blocks.*.attn.*") == [
        "blocks.0.attn.in_proj_weight", "blocks.0.attn.out_proj",
        "blocks.1.attn.in_proj_weight", "blocks.1.attn.out_proj",
    ]
    assert names("head.weight") == ["head"]  # keys work as names
    assert names(["head", "emb", "head"]) == ["emb", "head"]  # module order, once
    assert names("cross.?_proj_weight") == ["cross.q_proj_weight", "cross.k_proj_weight", "cross.v_proj_weight"]
    assert names("*.out_proj.weight") == ["attn.out_proj", "cross.out_proj", "blocks.0.attn.out_proj", "blocks.1.attn.out_proj"]
    for bad in ("norm", "nope", "blocks.*.mlp", "blocks.0"):
        with pytest.raises(SpecError, match=repr(bad).replace("*", r"\*").replace(".", r"\.")):
            select(m, bad)
    assert select(LeNet300(), "conv") == []  # a group is never an error
    assert match(compressible_tensors(m), "blocks.0") == []


def test_table_precedence_name_glob_kind_fallback_all():
    m = Zoo()
    ts = {t.name: t for t in compressible_tensors(m)}
    table = {"all": 2, "fc": 5, "conv": 8, "blocks.*": 3, "blocks.1.*": 4, "head": 6}
    got = resolve_table(m, table)
    assert got["head"] == 6  # exact name
    assert got["blocks.0.fc"] == 3 and got["blocks.1.fc"] == 4  # last matching glob
    assert got["blocks.0.attn.in_proj_weight"] == 3
    assert got["dw"] == 8 and got["up"] == 8  # kind
    assert got["attn.in_proj_weight"] == 5 and got["emb"] == 5  # attention/embedding -> fc
    assert lookup(ts["emb"], {"all": 2}) == 2
    assert lookup(ts["emb"], {"conv": 8}) is None
    assert lookup(ts["attn.out_proj"], {"fc": 5}, fallback={}) is None
    assert lookup(ts["attn.out_proj"], {"fc": 5, "attention": 7}) == 7
    assert resolve_table(m, {"conv": 1}) == {"conv": 1, "dw": 1, "up": 1}
    with pytest.raises(SpecError, match="'fc9'"):
        resolve_table(m, {"fc9": 1})


def test_bits_spec_one_range():
    assert (MIN_BITS, MAX_BITS) == (1, 15)
    assert parse_bits_spec("conv=8,fc=5,blocks.*.attn.*=4") == {"conv": 8, "fc": 5, "blocks.*.attn.*": 4}
    assert parse_bits_spec(3) == {"all": 3} == parse_bits_spec(" 3 ")
    assert parse_bits_spec({"attention": 15, "embedding": 1}) == {"attention": 15, "embedding": 1}
    for bad in (0, 16, "fc=16", "fc=0", {"fc": 16}, "fc=2.5", "fc", "=3", "", {}, True, {"fc": True}, [3]):
        with pytest.raises(SpecError):
            parse_bits_spec(bad)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="1..15"):
        parse_bits_spec("fc=16")
    with pytest.raises(SpecError, match="twice"):
        parse_bits_spec("fc=3,fc=4")


def test_every_bits_parser_uses_the_one_range():
    from sparsenet.coding.save import parse_bits
    from sparsenet.pipeline.checks import RecipeError
    from sparsenet.pipeline.checks import parse_bits as recipe_bits
    from sparsenet.share import parse_bits_spec as share_bits

    for ok in (MIN_BITS, MAX_BITS):
        spec = f"fc={ok}"
        assert parse_bits(spec, {}) == share_bits(spec) == recipe_bits(spec) == {"fc": ok}
        assert recipe_bits(ok) == parse_bits(ok, {}) == {"all": ok}
    for bad in (MIN_BITS - 1, MAX_BITS + 1):
        with pytest.raises(SpecError):
            parse_bits(f"fc={bad}", {})
        with pytest.raises(SpecError):
            share_bits(f"fc={bad}")
        with pytest.raises(RecipeError):
            recipe_bits(f"fc={bad}")
        with pytest.raises(RecipeError):
            recipe_bits({"fc": bad})


def test_sparsity_spec():
    assert parse_sparsity_spec(0.9) == {"all": 0.9} == parse_sparsity_spec("0.9")
    assert parse_sparsity_spec("fc1=0.92,conv=0.5,blocks.*=1") == {"fc1": 0.92, "conv": 0.5, "blocks.*": 1.0}
    assert parse_sparsity_spec({"fc": 0}) == {"fc": 0.0}
    for bad in (1.5, -0.1, "fc=x", "fc=1.01", "fc", "", {"fc": True}, float("nan")):
        with pytest.raises(SpecError):
            parse_sparsity_spec(bad)  # type: ignore[arg-type]


def test_groups_constant():
    assert GROUPS == ("fc", "conv", "embedding", "attention", "all")
