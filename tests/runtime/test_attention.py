"""The sparse runtime's multi-head attention equals torch's, and a ViT file loads into it."""

import copy

import pytest
import torch
from runtime_helpers import assert_rel_close
from test_plan import prune_share
from torch import nn

import sparsenet
from sparsenet.coding import save_snn
from sparsenet.runtime import SparseLinear
from sparsenet.runtime.attention import SparseMultiheadAttention


def _sparse_copy(mha: nn.MultiheadAttention) -> SparseMultiheadAttention:
    inp = SparseLinear.from_dense(mha.in_proj_weight.detach(), mha.in_proj_bias.detach())
    out = SparseLinear.from_dense(mha.out_proj.weight.detach(), mha.out_proj.bias.detach())
    return SparseMultiheadAttention(mha, inp, out)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights, average", [(False, True), (True, True), (True, False)])
def test_equals_torch_attention(batch_first, need_weights, average):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_weight.mul_((torch.rand_like(mha.in_proj_weight) < 0.3).float())
    sp = _sparse_copy(mha)
    x = torch.randn(3, 5, 16)  # (B, T, E) or (T, B, E)
    y = torch.randn(3, 7, 16) if batch_first else torch.randn(7, 5, 16)
    pad = torch.zeros(3 if batch_first else 5, 7, dtype=torch.bool)
    pad[0, -2:] = True
    t = 5 if batch_first else 3
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    with torch.no_grad():
        for args, kw in (((x, x, x), {}), ((x, y, y), {"key_padding_mask": pad}),
                         ((x, x, x), {"attn_mask": causal}), ((x[0], x[0], x[0]), {})):
            ref = mha(*args, need_weights=need_weights, average_attn_weights=average, **kw)
            got = sp(*args, need_weights=need_weights, average_attn_weights=average, **kw)
            assert_rel_close(got[0], ref[0])
            if need_weights:
                assert_rel_close(got[1], ref[1])
            else:
                assert got[1] is None


def test_vit_file_runs_on_sparse_attention(tmp_path):
    """A pruned, shared ViT: every attention projection is compact; logits equal dense."""
    torch.manual_seed(1)
    vit = prune_share(sparsenet.build_model("vit"), 0.1)
    with torch.no_grad():
        for m in vit.modules():
            if isinstance(m, nn.MultiheadAttention):  # prune_share skips in_proj_weight
                w = m.in_proj_weight
                cb = torch.linspace(-0.2, 0.2, 15)
                w.copy_(cb[(w[..., None] - cb).abs().argmin(-1)] * (torch.rand_like(w) < 0.1))
    save_snn(vit.eval(), tmp_path / "vit.snn")
    dense = sparsenet.load(tmp_path / "vit.snn")
    sparse = sparsenet.load(tmp_path / "vit.snn", runtime="sparse")
    attn = [m for m in sparse.modules() if isinstance(m, SparseMultiheadAttention)]
    assert len(attn) == len([m for m in dense.modules() if isinstance(m, nn.MultiheadAttention)]) > 0
    assert not any(isinstance(m, nn.MultiheadAttention) for m in sparse.modules())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert_rel_close(sparse(x), dense(x))
        assert_rel_close(copy.deepcopy(sparse)(x), dense(x))
    from sparsenet.runtime.memory import weight_bytes

    assert weight_bytes(sparse) < weight_bytes(dense) / 2
