import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsenet.checkpoint import load_model, register_parametrization, save_model
from sparsenet.errors import SparsenetError
from sparsenet.models import LeNet5, LeNet300
from sparsenet.share import SharedWeight, bake, index_dtype, share_tensor, share_weights
from sparsenet.share.kmeans import KMeans1D
from sparsenet.training import TrainConfig, fit


@register_parametrization
class LocalMask(nn.Module):
    """Stand-in for sparsenet.prune.Mask: effective weight = original * mask."""

    transform_kind = "test-share-mask"

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask.clone())

    def forward(self, x):
        return x * self.mask

    def spec(self):
        return {"shape": list(self.mask.shape)}

    @classmethod
    def from_spec(cls, spec):
        return cls(torch.ones(spec["shape"]))


def small_net(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return LeNet300(in_features=64, hidden=(24, 12), num_classes=10).to(dtype)


def prune_plain(model, frac=0.7):
    """Zero the smallest ``frac`` of each weight by magnitude, as plain zeros."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                t = m.weight.abs().flatten().kthvalue(int(frac * m.weight.numel())).values
                m.weight[m.weight.abs() <= t] = 0


def test_effective_weight_is_codebook_lookup():
    w = torch.randn(20, 30)
    p = share_tensor(w, bits=3, init="optimal")
    assert p.indices.dtype == torch.uint8 and p.centroids.shape == (8,)
    out = p(w)
    assert torch.equal(out, p.centroids.detach()[p.indices.long()])
    km = KMeans1D(8, init="optimal").fit(w.flatten().double().numpy())
    assert torch.equal(p.centroids.detach(), torch.from_numpy(km.cluster_centers_).float())
    assert torch.equal(p.indices.flatten().long(), torch.from_numpy(km.labels_))


@pytest.mark.parametrize("bits, dtype", [(1, torch.uint8), (8, torch.uint8), (9, torch.int16)])
def test_index_dtype(bits, dtype):
    assert index_dtype(2**bits) == dtype
    p = SharedWeight((3, 4), bits)
    assert p.indices.dtype == dtype and p.centroids.shape == (2**bits,)


def test_bad_bits():
    for b in (0, 16, 2.0):
        with pytest.raises(SparsenetError):
            SharedWeight((2, 2), b)


def test_centroid_gradient_is_exact_sum_of_member_gradients():
    # Integer-valued upstream gradients make every partial sum exact in float32 (|sum| < 2**24),
    # so any summation order gives the same bits: torch.equal is a fair test.
    torch.manual_seed(0)
    w = torch.randn(40, 50)
    w[w.abs() < 0.3] = 0  # pruned positions
    p = share_tensor(w, bits=4, init="density")
    g = torch.randint(-50, 51, w.shape).float()  # dL/dW
    (p(w) * g).sum().backward()
    keep = p.keep
    idx = p.indices.long()
    expected = torch.zeros(16)
    for j in range(16):
        expected[j] = g[keep & (idx == j)].sum()
    assert torch.equal(p.centroids.grad, expected)
    # Pruned positions contribute nothing, even though their (unused) index is 0.
    assert not torch.equal(expected[0], g[idx == 0].sum())
    # One SGD step moves each centroid by lr times that sum (lr a power of two: exact).
    before = p.centroids.detach().clone()
    torch.optim.SGD([p.centroids], lr=2.0**-10).step()
    assert torch.equal(p.centroids.detach(), before - 2.0**-10 * expected)


def test_centroid_gradient_in_a_network_float64(digits_data):
    # Real back-propagated gradients through LeNet-300 in float64. The reference sums the
    # member gradients with numpy (pairwise order), autograd with a scatter-add (another
    # order). Two orders of summing m terms differ by at most ~2·m·eps·Σ|g| (standard
    # bound, eps = 2**-53), which is the tolerance used.
    model = small_net(dtype=torch.float64)
    prune_plain(model, 0.5)
    share_weights(model, "fc=3", init="linear")
    x, y = digits_data.train
    x, y = x[:256].double(), y[:256]
    with parametrize.cached():
        weights = {n: model.get_submodule(n).weight for n in ("fc1", "fc2", "fc3")}
        for w in weights.values():
            w.retain_grad()
        nn.functional.cross_entropy(model(x), y).backward()
    eps = 2.0**-53
    for name, w in weights.items():
        p = model.get_submodule(name).parametrizations.weight[0]
        idx = p.indices[p.keep].long().numpy()
        g = w.grad[p.keep].numpy()
        ref = np.bincount(idx, weights=g, minlength=p.k)
        bound = (
            2
            * np.bincount(idx, minlength=p.k)
            * eps
            * np.bincount(idx, weights=np.abs(g), minlength=p.k)
        )
        assert np.all(np.abs(p.centroids.grad.numpy() - ref) <= bound), name
        assert np.abs(ref).max() > 0  # the gradients are not trivially zero


def test_zeros_stay_zero_after_sharing_and_finetuning(digits_data):
    model = small_net()
    prune_plain(model, 0.8)
    zeros = {n: model.get_submodule(n).weight.detach() == 0 for n in ("fc1", "fc2", "fc3")}
    share_weights(model, "fc=2", init="random", seed=1)
    for n, z in zeros.items():
        p = model.get_submodule(n).parametrizations.weight[0]
        assert torch.equal(p.keep, ~z)
        assert torch.all(model.get_submodule(n).weight[z] == 0)
        # Zeros are not a cluster: the clustering is that of the non-zero values alone.
        w0 = model.get_submodule(n).parametrizations.weight.original.detach()
        km = KMeans1D(4, init="random", seed=1).fit(w0[~z].double().numpy())
        assert torch.equal(p.indices[~z].long(), torch.from_numpy(km.labels_))
        assert int(p.cluster_sizes().sum()) == int((~z).sum())
    fit(model, digits_data.train, TrainConfig(epochs=1, lr=1e-2, optimizer="adam", quiet=True))
    for n, z in zeros.items():
        w = model.get_submodule(n).weight.detach()
        assert torch.all(w[z] == 0), n


def test_composes_with_a_mask_parametrisation(digits_data, tmp_path):
    model = small_net()
    masks = {}
    for n in ("fc1", "fc2"):
        m = model.get_submodule(n)
        masks[n] = (torch.rand(m.weight.shape) > 0.6).float()
        parametrize.register_parametrization(m, "weight", LocalMask(masks[n]))
    share_weights(model, "fc=3,fc3=4", init="optimal")
    fc1 = model.fc1
    assert [type(q) for q in fc1.parametrizations.weight] == [LocalMask, SharedWeight]
    assert torch.equal(fc1.parametrizations.weight[1].keep, masks["fc1"].bool())
    fit(model, digits_data.train, TrainConfig(epochs=1, lr=1e-2, optimizer="adam", quiet=True))
    for n in ("fc1", "fc2"):
        assert torch.all(model.get_submodule(n).weight[masks[n] == 0] == 0)
    # Save/load replays mask then codebook.
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert [type(q) for q in loaded.fc1.parametrizations.weight] == [LocalMask, SharedWeight]
    assert torch.equal(loaded.fc1.weight, model.fc1.weight)
    # bake removes the codebook only; the mask stays and the values are unchanged.
    value = model.fc1.weight.detach().clone()
    original = model.fc1.parametrizations.weight.original
    bake(model)
    assert [type(q) for q in model.fc1.parametrizations.weight] == [LocalMask]
    assert model.fc1.parametrizations.weight.original is original
    assert torch.equal(model.fc1.weight, value)
    assert not parametrize.is_parametrized(model.fc3)


def test_save_load_keeps_codebooks_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = LeNet5(input_size=16, padding=2)
    prune_plain(model, 0.5)
    share_weights(model, "conv=9,fc=5,fc2=2", init="random", seed=4)
    save_model(model, tmp_path / "s.pt")
    loaded, _ = load_model(tmp_path / "s.pt")
    for name in ("conv1", "conv2", "fc1", "fc2"):
        a = model.get_submodule(name).parametrizations.weight[0]
        b = loaded.get_submodule(name).parametrizations.weight[0]
        assert (a.bits, b.bits) == (
            (9, 9) if name.startswith("conv") else (5, 5) if name == "fc1" else (2, 2)
        )
        assert b.indices.dtype == a.indices.dtype
        assert torch.equal(a.centroids, b.centroids)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.keep, b.keep)
    x = torch.rand(5, 1, 16, 16)
    assert torch.equal(model(x), loaded(x))


def test_bake_keeps_parameter_identity_and_values():
    model = small_net()
    share_weights(model, "fc=4")
    originals = {n: model.get_submodule(n).parametrizations.weight.original for n in ("fc1", "fc2")}
    values = {n: model.get_submodule(n).weight.detach().clone() for n in ("fc1", "fc2")}
    x = torch.rand(3, 64)
    out = model(x)
    assert bake(model) is model
    for n in ("fc1", "fc2"):
        m = model.get_submodule(n)
        assert not parametrize.is_parametrized(m)
        assert m.weight is originals[n] and isinstance(m.weight, nn.Parameter)
        assert torch.equal(m.weight, values[n])
        assert len(torch.unique(m.weight)) <= 16
    assert torch.equal(model(x), out)


def test_sharing_twice_is_an_error():
    model = small_net()
    share_weights(model, "fc1=3")
    with pytest.raises(SparsenetError, match="already (weight-)?shared"):
        share_weights(model, "fc=3")
    share_weights(model, "fc2=3")  # other layers are still fine
    with pytest.raises(SparsenetError, match="unknown init"):
        share_weights(small_net(), "fc=3", init="nope")


def test_all_zero_layer():
    p = share_tensor(torch.zeros(4, 5), bits=2)
    assert not p.keep.any() and torch.equal(p(torch.zeros(4, 5)), torch.zeros(4, 5))


def test_mask_after_sharing_then_bake():
    model = small_net()
    share_weights(model, "fc1=2")
    mask = (torch.rand(model.fc1.weight.shape) > 0.5).float()
    parametrize.register_parametrization(
        model.fc1, "weight", LocalMask(mask)
    )  # prune a shared layer
    value = model.fc1.weight.detach().clone()
    assert torch.all(value[mask == 0] == 0) and len(torch.unique(value)) <= 5
    bake(model)
    assert [type(q) for q in model.fc1.parametrizations.weight] == [LocalMask]
    assert torch.equal(model.fc1.weight, value)
