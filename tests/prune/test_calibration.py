"""Layer inputs: unfolded convolutions reproduce the layer, attention's packed projection,
sequential recording sees the already-pruned earlier layers."""

import pytest
import torch
from torch import nn

from sparsenet.errors import SparsenetError
from sparsenet.layers import layer_kind
from sparsenet.prune import Wanda, get_mask, layer_view, prune, record, sequential
from sparsenet.prune.mask import Target as _Target
from sparsenet.prune.patterns import matrix_view


def Target(name: str, module: nn.Module, tensor: str = "weight") -> _Target:  # noqa: N802
    """A prune target from its name, module and tensor (kind from the module)."""
    kind = "attention" if isinstance(module, nn.MultiheadAttention) else layer_kind(module)
    path = name.rpartition(".")[0] if tensor != "weight" else name
    return _Target(name, path, tensor, kind or "fc", module)


@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, bias=False),
        lambda: nn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=(2, 1), dilation=2, bias=False),
        lambda: nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect", bias=False),
        lambda: nn.Conv1d(3, 4, 5, stride=2, padding=2, bias=False),
        lambda: nn.Conv3d(2, 3, 2, stride=1, padding=1, groups=1, bias=False),
    ],
)
def test_unfolded_input_times_the_weight_matrix_is_the_convolution(conv):
    torch.manual_seed(0)
    m = conv()
    d = len(m.kernel_size)
    x = torch.randn(2, m.in_channels, *([7] * d))
    view = layer_view(Target("c", m))
    xs = view.inputs((x,), {})
    w = matrix_view(m.weight.detach())
    per = w.shape[0] // view.blocks
    y = m(x).detach()  # (B, out, *spatial)
    outs = [xg @ w[g * per:(g + 1) * per].T for g, xg in enumerate(xs)]  # (B·L, out/groups)
    got = torch.cat(outs, dim=1).reshape(y.shape[0], *y.shape[2:], y.shape[1]).movedim(-1, 1)
    assert torch.allclose(got, y, atol=1e-5)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def test_attention_in_proj_sees_its_query_and_prunes():
    torch.manual_seed(0)
    model = Attn()
    x = torch.randn(16, 5, 8)
    t = Target("attn.in_proj_weight", model.attn, "in_proj_weight")
    (st,) = record(model, [t], x)
    flat = x.reshape(-1, 8).double()
    for b in range(3):  # q, k, v rows all see the same (self-attention) input
        assert torch.allclose(st.gram[b], flat.T @ flat)
    prune(model, "sparsegpt", per_layer={"attn.in_proj_weight": 0.5, "head": 0.5}, data=x,
          calibration=16)
    keep = get_mask(model.attn, "in_proj_weight")
    assert int((~keep).sum()) == 3 * 8 * 8 // 2
    with pytest.raises(SparsenetError, match="out_proj"):
        prune(Attn(), "wanda", sparsity=0.5, data=x)  # out_proj never runs as a module


def test_sequential_records_each_layer_after_the_earlier_ones_are_pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.rand(50, 6)
    seen = []

    def step(t, stats):
        seen.append(t.name)
        if t.name == "2":  # what fc2 sees must be the output of the zeroed fc1
            h = torch.relu(x @ model[0].weight.detach().T + model[0].bias.detach()).double()
            assert torch.allclose(stats.gram[0], h.T @ h)
        with torch.no_grad():
            t.module.weight.mul_(0.5)

    targets = [Target("4", model[4]), Target("0", model[0]), Target("2", model[2])]
    sequential(model, targets, x, step)
    assert seen == ["0", "2", "4"]  # forward order, whatever order they were given in


def test_wanda_scores_are_weight_times_input_norm_and_rows_lose_equal_shares():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6))
    x = torch.rand(40, 10) * torch.linspace(0.1, 3, 10)
    (sc,) = Wanda(x).scores(model, [Target("0", model[0])])
    assert torch.allclose(sc, model[0].weight.detach().abs() * x.double().norm(dim=0).float(), atol=1e-6)
    prune(model, "wanda", sparsity=0.5, data=x)
    keep = get_mask(model[0])
    assert (keep.sum(1) == 5).all()
    ranked = sc.masked_fill(~keep, float("inf")).amin(1) >= sc.masked_fill(keep, float("-inf")).amax(1)
    assert ranked.all()
