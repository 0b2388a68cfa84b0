"""Attention, depthwise, transposed-conv and embedding weights go through every stage like the
rest: pruned, shared, encoded into a .snn and loaded back equal."""

import pytest
import torch
from layer_zoo import AttnNet, Zoo, tokens

import sparsenet
from sparsenet.coding import read_snn, save_snn
from sparsenet.coding.accounting import size_report
from sparsenet.coding.save import effective_tensors
from sparsenet.layers import compressible_tensors
from sparsenet.prune import GradualPruning, get_mask, prune
from sparsenet.report.sizes import model_size
from sparsenet.share import SharedWeight, share_weights
from sparsenet.summary import model_summary
from sparsenet.training import TrainConfig, fit


def _codebook(t):
    if not t.parametrized:
        return None
    return next((p for p in t.module.parametrizations[t.tensor] if isinstance(p, SharedWeight)), None)


def _plain_copy(model, bare):
    """``bare`` holding ``model``'s effective weights as plain tensors.

    (Not a deepcopy + bake: a deepcopy shares torch's dynamic ``Parametrized*`` class, so
    removing the copy's parametrisation would remove the original's property too.)
    """
    bare.load_state_dict({k: v[3] for k, v in effective_tensors(model).items()})
    assert not any(t.parametrized for t in compressible_tensors(bare))
    return bare


def _check_forward_backward(model, bare, x):
    """Same outputs as a plain copy in eval (MHA's fast path: no grad) and train mode, and
    gradients reach the tensors behind the parametrisations."""
    ref = _plain_copy(model, bare)
    for train in (False, True):
        model.train(train)
        ref.train(train)
        with torch.no_grad():  # eval + no_grad: MHA takes its native fast path
            y, y_ref = model(x), ref(x)
        assert torch.allclose(y, y_ref, atol=1e-6, rtol=1e-5)
    model.eval()
    y_slow = model(x)  # grad enabled: MHA's Python path
    with torch.no_grad():
        assert torch.allclose(y_slow, ref(x), atol=1e-6, rtol=1e-5)
    model.train()
    model.zero_grad()
    model(x).square().sum().backward()
    shared = {f"{t.module_path}.parametrizations.{t.tensor}.original".lstrip(".")
              for t in compressible_tensors(model) if _codebook(t) is not None}
    for name, p in model.named_parameters():
        if name in shared:  # behind a codebook, original gets no gradient; centroids do
            assert p.grad is None
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("separate", [False, True])
def test_attention_and_depthwise_weights_are_pruned(separate):
    torch.manual_seed(0)
    m = AttnNet(separate=separate)
    prune(m, "magnitude", sparsity=0.5, scope="layer")
    ts = compressible_tensors(m)
    names = [t.name for t in ts]
    if separate:
        assert "attn.q_proj_weight" in names and "attn.in_proj_weight" not in names
    for t in ts:  # every compressible tensor, the new kinds included, carries a mask
        mask = get_mask(t.module, t.tensor)
        assert mask is not None, t.name
        assert int((~mask).sum()) == round(0.5 * mask.numel())
        assert torch.equal(t.value == 0, ~mask | (t.value == 0))
        assert (t.value[~mask] == 0).all()
    _check_forward_backward(m, AttnNet(separate=separate), tokens())
    # masked positions get no gradient in the original tensor
    name = "q_proj_weight" if separate else "in_proj_weight"
    orig = m.attn.parametrizations[name].original
    assert orig.grad is not None and orig.grad.abs().sum() > 0
    assert (orig.grad[~get_mask(m.attn, name)] == 0).all()


def test_prune_by_group_and_glob():
    m = AttnNet()
    prune(m, per_layer={"attention": 0.75, "dw": 0.5, "emb.weight": 0.25})
    by = {t.name: t for t in compressible_tensors(m)}
    for name, frac in [("attn.in_proj_weight", 0.75), ("attn.out_proj", 0.75), ("dw", 0.5), ("emb", 0.25)]:
        mask = get_mask(by[name].module, by[name].tensor)
        assert int((~mask).sum()) == round(frac * mask.numel()), name
    assert get_mask(m.head) is None
    m2 = AttnNet()
    prune(m2, sparsity=0.5, layers=["attn.*"], scope="layer")
    assert [t.name for t in compressible_tensors(m2) if t.parametrized] == ["attn.in_proj_weight", "attn.out_proj"]


def test_gradual_pruning_inside_fit_reaches_attention():
    torch.manual_seed(0)
    m = AttnNet()
    x = tokens(64, seed=1)
    y = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(2))
    cb = GradualPruning("magnitude", 0.6, end_step=4, frequency=2)
    fit(m, (x, y), TrainConfig(epochs=2, batch_size=16, lr=0.01, quiet=True), callbacks=[cb])
    for t in compressible_tensors(m):
        mask = get_mask(t.module, t.tensor)
        assert mask is not None, t.name
    total = sum(t.value.numel() for t in compressible_tensors(m))
    zeros = sum(int((t.value == 0).sum()) for t in compressible_tensors(m))
    assert zeros >= round(0.6 * total)


@pytest.mark.parametrize("separate", [False, True])
def test_attention_and_depthwise_weights_are_shared(separate):
    torch.manual_seed(0)
    m = AttnNet(separate=separate)
    prune(m, "magnitude", sparsity=0.5, scope="layer")
    zeros = {t.name: (t.value == 0).clone() for t in compressible_tensors(m)}
    share_weights(m, weight_bits={"conv": 3, "fc": 2})  # attention and embedding take fc's 2 bits
    for t in compressible_tensors(m):
        p = _codebook(t)
        assert p is not None, t.name
        assert p.bits == (3 if t.kind == "conv" else 2)
        v = t.value.detach()
        assert torch.equal(v == 0, zeros[t.name])  # zeros stay zero, nothing else becomes zero
        assert v[v != 0].unique().numel() <= 2**p.bits
    _check_forward_backward(m, AttnNet(separate=separate), tokens())
    cb = _codebook(next(t for t in compressible_tensors(m) if t.kind == "attention"))
    assert cb.centroids.grad is not None and cb.centroids.grad.abs().sum() > 0


def test_share_bits_glob_and_attention_group():
    m = AttnNet()
    share_weights(m, "fc=5,attn.*=2,embedding=1")
    bits = {t.name: _codebook(t).bits for t in compressible_tensors(m) if _codebook(t) is not None}
    assert bits == {"emb": 1, "attn.in_proj_weight": 2, "attn.out_proj": 2, "head": 5}
    m = AttnNet()
    share_weights(m, {"attention": 3})
    assert [t.name for t in compressible_tensors(m) if t.parametrized] == ["attn.in_proj_weight", "attn.out_proj"]


def _compress(model):
    prune(model, "magnitude", sparsity=0.6, scope="layer")
    share_weights(model, weight_bits={"conv": 4, "fc": 3})
    return model


@pytest.mark.parametrize("separate", [False, True])
def test_attention_and_depthwise_weights_encoded_and_loaded_back_equal(tmp_path, separate):
    torch.manual_seed(0)
    m = _compress(AttnNet(separate=separate))
    path = tmp_path / "attn.snn"
    report = save_snn(m, path)
    snn = read_snn(path)
    layers = {lc.name: lc for lc in snn.layers}
    want = {t.key: t.kind for t in compressible_tensors(m)}
    assert {k: lc.kind for k, lc in layers.items()} == want  # every compressible tensor is coded
    for key, lc in layers.items():
        assert lc.mode in ("codebook", "sparse"), key
        assert lc.bits == (4 if lc.kind == "conv" else 3)
    assert "attn.in_proj_bias" in snn.tensors and "attn.out_proj.bias" in snn.tensors
    rows = {r["layer"]: r for r in report["layers"]}
    attn_in = "attn.q_proj_weight" if separate else "attn.in_proj_weight"
    assert attn_in in rows and "attn.out_proj" in rows and "dw" in rows and "emb" in rows
    if not separate:
        assert rows["attn.in_proj_weight"]["bias_bits"] == 32 * 24
    assert size_report(snn)["layers"] == report["layers"]
    loaded = sparsenet.load(path, model=AttnNet(separate=separate))
    eff = {t.key: t.value.detach() for t in compressible_tensors(m)}
    sd = loaded.state_dict()
    for key, v in eff.items():
        assert torch.equal(sd[key], v), key
    x = tokens()
    m.eval()
    plain = _plain_copy(m, AttnNet(separate=separate)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))
        # torch may pick another matmul kernel for a computed (parametrised) weight: 1 ulp
        assert torch.allclose(loaded(x), m(x), atol=1e-6, rtol=1e-6)
    sparse = sparsenet.load(path, runtime="sparse", model=AttnNet(separate=separate))
    with torch.no_grad():
        assert torch.allclose(sparse(x), m(x), atol=1e-5)


def test_zoo_encoded_and_loaded_back_equal(tmp_path):
    """Every layer type, transposed conv and separate q/k/v included, round-trips a .snn."""
    torch.manual_seed(0)
    m = _compress(Zoo())
    path = tmp_path / "zoo.snn"
    save_snn(m, path, weight_bits="attention=3", gap_bits="auto", record_arch=False)  # Zoo has no forward
    coded = {lc.name for lc in read_snn(path).layers}
    assert coded == {t.key for t in compressible_tensors(m)}
    loaded = sparsenet.load(path, model=Zoo())
    ref = _plain_copy(m, Zoo()).state_dict()
    got = loaded.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


def test_report_and_summary_list_the_new_kinds():
    m = _compress(AttnNet())
    size = {r["name"]: r for r in model_size(m)["layers"]}
    assert set(size) == {t.name for t in compressible_tensors(m)}
    assert size["attn.in_proj_weight"]["kind"] == "attention" and size["emb"]["kind"] == "embedding"
    assert size["attn.in_proj_weight"]["weight_bits"] == 3 and size["dw"]["weight_bits"] == 4
    assert size["attn.in_proj_weight"]["index_bits"] == 5  # attention takes fc's gap bits
    summ = {r["name"]: r for r in model_summary(m)["layers"]}
    assert set(summ) == set(size)
    row = summ["attn.in_proj_weight"]
    assert row["kind"] == "attention" and row["type"] == "MultiheadAttention" and row["parametrized"]
    assert [t["kind"] for t in row["transforms"]] == ["mask", "codebook"]
    assert all(t.get("tensor") == "in_proj_weight" for t in row["transforms"])
    assert [t["kind"] for t in summ["attn.out_proj"]["transforms"]] == ["mask", "codebook"]
    assert row["bias"] == 24 and summ["emb"]["bias"] == 0
