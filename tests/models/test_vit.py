"""The registry ViT: size, shapes, tracing, rebuild; an unregistered copy end to end."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SparsenetError
from sparsenet.models import ViT, build_model, count_weights, model_for_dataset
from sparsenet.prune import prune, sparsity_report
from sparsenet.training import TrainConfig, evaluate, fit


def weight_tensors(model):
    """Linear/Conv/Embedding weights and MultiheadAttention in-projections, counted by hand."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            n += m.weight.numel()
        if isinstance(m, nn.MultiheadAttention):
            n += m.in_proj_weight.numel()
    return n


def test_weight_count_and_layout():
    m = build_model("vit")
    d, blocks = 96, 3
    expected = 16 * d + 49 * d + blocks * (3 * d * d + d * d + 2 * d * 2 * d) + d * 10
    assert count_weights(m) == weight_tensors(m) == expected == 228_384
    assert 200_000 <= expected <= 500_000
    attn = [a for a in m.modules() if isinstance(a, nn.MultiheadAttention)]
    assert len(attn) == blocks and all(a.batch_first for a in attn)
    assert m.arch["name"] == "vit" and m.arch["kwargs"]["patch"] == 4
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("train", [False, True])
def test_fx_trace_equals_eager(train):
    m = build_model("vit", seed=0).train(train)
    g = torch.fx.symbolic_trace(m)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(g(x), m(x), atol=1e-6)
    assert any(n.op == "call_module" and n.target == "pos" for n in g.graph.nodes)


def test_checkpoint_rebuilds(tmp_path):
    a = build_model("vit", seed=1).eval()
    save_model(a, tmp_path / "v.pt")
    b, _ = load_model(tmp_path / "v.pt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(a(x), b.eval()(x))


def test_small_inputs_and_bad_sizes():
    m = model_for_dataset("vit", (1, 8, 8), 10)
    assert m.arch["kwargs"]["patch"] == 2 and m.num_tokens == 16
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(SparsenetError, match="multiple of patch"):
        ViT(input_size=30)
    with pytest.raises(SparsenetError, match="multiple of heads"):
        ViT(dim=90, heads=4)


class MiniViT(nn.Module):
    """Unregistered: 2×2 patches, one pre-LN attention block, mean pooling."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 2, stride=2)
        self.pos = nn.Embedding(16, 16)
        self.ln1 = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.ln2 = nn.LayerNorm(16)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 32), gelu=nn.GELU(),
                                             fc2=nn.Linear(32, 16)))
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.pos(torch.arange(16, device=x.device))
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.norm(x).mean(1))


def test_unregistered_vit_end_to_end(digits_data):
    torch.manual_seed(0)
    model = MiniViT()
    torch.fx.symbolic_trace(model)
    xtr, ytr = digits_data.train
    fit(model, (xtr, ytr),
        TrainConfig(epochs=25, batch_size=64, lr=3e-3, optimizer="adamw", weight_decay=0.01,
                    quiet=True))
    before = evaluate(model, digits_data.test)["accuracy"]
    assert before > 0.5
    prune(model, "obd", sparsity=0.3, data=(xtr[:30], ytr[:30]))
    assert abs(sparsity_report(model)["sparsity"] - 0.3) < 0.01
    assert evaluate(model, digits_data.test)["accuracy"] > before - 0.2
