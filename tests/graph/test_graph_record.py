"""Graph record round trips: record -> JSON -> build (meta, then real) -> same logits."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from graph_models import MLP, Block, TinyViT, Untraceable
from torch import nn

import sparsenet
from sparsenet.graph import (
    LEAF_TYPES,
    RecordError,
    build_graph_module,
    check_recordable,
    record_model,
)


def _rebuild(model: nn.Module) -> nn.Module:
    """JSON round trip of the record, then the model's own tensors loaded into the rebuild."""
    rec = json.loads(json.dumps(record_model(model)))
    with torch.device("meta"):
        meta = build_graph_module(rec)
    assert list(meta.state_dict()) == list(model.state_dict())  # names and order kept
    assert not any(t.device.type != "meta" for t in meta.state_dict().values())
    gm = build_graph_module(rec)
    gm.load_state_dict(model.state_dict())
    return gm.eval()


class Seq(nn.Module):
    """Every branch of the functional vocabulary the record has to carry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.gn = nn.GroupNorm(2, 6)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.emb = nn.Embedding(10, 4)
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.gn(self.bn(self.conv(x))))  # (B, 6, 4, 4)
        y = self.up(y)  # (B, 4, 8, 8)
        y = y.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4)  # (B, 64, 4)
        e = self.emb(ids)  # (B, L, 4)
        z = torch.cat((y, e), dim=1) * self.scale  # (B, 64 + L, 4)
        return z[..., 1:3].sum(dim=-1) - z.mean(1, keepdim=True)[:, :, 0]


def test_round_trip_tiny_vit_equal_logits():
    torch.manual_seed(0)
    m = TinyViT()
    with torch.no_grad():
        m.cls_token.normal_()
        m.block.bn.running_mean.uniform_(-1, 1)
    m.eval()
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(_rebuild(m)(x), m(x))


def test_round_trip_functional_vocabulary():
    torch.manual_seed(0)
    m = Seq().eval()
    x, ids = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2, 5))
    assert torch.equal(_rebuild(m)(x, ids), m(x, ids))


def test_record_is_plain_json_and_names_only_whitelisted_things():
    rec = record_model(TinyViT())
    assert json.loads(json.dumps(rec)) == rec
    assert {m["type"] for m in rec["modules"]} <= set(LEAF_TYPES)
    kinds = {(n["op"], n["target"]) for n in rec["nodes"] if n["op"].startswith("call_f")}
    assert ("call_function", "operator.add") in kinds and ("call_function", "torch.cat") in kinds
    assert [t["name"] for t in rec["tensors"]] == ["cls_token"]
    dw = next(m for m in rec["modules"] if m["name"] == "block.dw")
    assert dw["kwargs"]["groups"] == 16 and dw["kwargs"]["bias"] is True
    attn = next(m for m in rec["modules"] if m["name"] == "attn")
    assert attn["kwargs"]["batch_first"] is True


def test_recorded_in_eval_mode_and_training_flags_restored():
    m = TinyViT().train()
    m.block.eval()
    record_model(m)
    assert m.training and m.head.training and not m.block.training and not m.block.bn.training


def test_parametrised_layers_are_recorded_as_their_base_class():
    from sparsenet.prune import prune

    m = prune(MLP(), sparsity=0.5)
    rec = record_model(m)
    assert [(x["name"], x["type"]) for x in rec["modules"]] == [("fc1", "Linear"), ("fc2", "Linear")]


def test_module_swaps_are_recorded_as_slots_and_rebuilt_from_transforms(tmp_path):
    from sparsenet.lowrank import factorize
    from sparsenet.lowrank.layers import LowRankLinear

    torch.manual_seed(0)
    m = factorize(MLP(), rank={"fc1": 4})
    assert isinstance(m.fc1, LowRankLinear)
    rec = record_model(m)
    assert {"name": "fc1", "swap": "lowrank"} in rec["modules"]
    sparsenet.save_model(m, tmp_path / "m.pt")
    back, _ = sparsenet.load(tmp_path / "m.pt", with_metadata=True)
    assert isinstance(back.fc1, LowRankLinear)
    x = torch.randn(3, 64)
    assert torch.equal(back(x), m.eval()(x))


def test_untraceable_model_gives_record_error_naming_the_reason(tmp_path):
    with pytest.raises(RecordError, match="torch.fx cannot trace.*model=") as exc:
        check_recordable(Untraceable())
    assert "Untraceable" in str(exc.value)
    with pytest.raises(RecordError):
        sparsenet.save_snn(Untraceable(), tmp_path / "u.snn")
    assert not (tmp_path / "u.snn").exists()
    # explicitly without an architecture: loads with model= only
    sparsenet.save_snn(Untraceable(), tmp_path / "u.snn", record_arch=False)
    with pytest.raises(sparsenet.CorruptFileError, match="pass model="):
        sparsenet.load(tmp_path / "u.snn")
    torch.manual_seed(0)
    m = Untraceable().eval()
    sparsenet.save_snn(m, tmp_path / "v.snn", record_arch=False)
    x = torch.randn(2, 64)
    assert torch.equal(sparsenet.load(tmp_path / "v.snn", model=Untraceable())(x), m(x))


def test_function_outside_the_whitelist_is_refused_at_record_time():
    class UsesErfinv(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.erfinv(x)

    with pytest.raises(RecordError, match="erfinv.*not in sparsenet.graph.ops.FUNCTIONS"):
        record_model(UsesErfinv())


def test_tensor_constants_and_unknown_layers_are_refused():
    class Const(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(3)

    class Rnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    with pytest.raises(RecordError):
        record_model(Const())
    with pytest.raises(RecordError):
        record_model(Rnn())


def test_registry_models_are_always_recordable_and_blocks_trace():
    check_recordable(sparsenet.build_model("lenet5"))
    b = Block(4).eval()
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(_rebuild(b)(x), b(x))


def test_forward_hooks_do_not_see_the_tracer_and_are_kept():
    m = MLP()
    seen: list[type] = []
    m.register_forward_hook(lambda mod, inp, out: seen.append(type(out)))
    m.fc1.register_forward_pre_hook(lambda mod, inp: seen.append(type(inp[0])))
    record_model(m)
    assert seen == []
    m(torch.randn(1, 64))
    assert seen == [torch.Tensor, torch.Tensor]
