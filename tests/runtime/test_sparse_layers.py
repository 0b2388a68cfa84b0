"""Sparse layers and kernels agree with dense torch layers, on every weight mode and pattern."""

import numpy as np
import pytest
import torch
from runtime_helpers import assert_rel_close
from torch import nn

from sparsenet.runtime import SparseConv2d, SparseLinear, compact_from_dense, decode_dense


def _sparse_weight(shape, density, seed, k=None):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    if k is not None:  # shared: k distinct values
        cb = torch.linspace(-1, 1, k)
        w = cb[torch.randint(0, k, shape, generator=g)]
    return w * (torch.rand(shape, generator=g) < density)


@pytest.mark.parametrize("density", [0.0, 0.003, 0.08, 0.6, 1.0])
@pytest.mark.parametrize("k", [None, 7, 256])
def test_compact_roundtrip_exact(density, k):
    w = _sparse_weight((13, 700), density, 1, k)
    w[2] = 0  # empty row
    w[:, 5] = 0  # empty column
    w[4, 699] = 1.0 if k else 0.5  # a lone non-zero at the row end (in the codebook when shared)
    cw = compact_from_dense(w)
    back = decode_dense(*(torch.from_numpy(a) for a in (cw.seg_ptr, cw.entries, cw.codebook, cw.values)),
                        700, cw.colbits)
    assert torch.equal(back, w)
    assert cw.entries.dtype == np.uint16 and cw.seg_ptr.dtype == np.int32
    assert cw.entries.size == int((w != 0).sum())  # one entry per non-zero, no fillers
    shared = len(torch.unique(w[w != 0])) <= 256
    assert (cw.codebook.size > 0) == (shared and bool((w != 0).any()))
    assert (cw.values.size > 0) == (not shared)
    # code bits + column bits fit 16; 8-bit codes over 700 columns need 3 segments of 256
    codebits = int(cw.codebook.size - 1).bit_length() if cw.codebook.size else 0
    assert cw.colbits <= 16 - codebits and cw.nseg == -(-700 // (1 << cw.colbits))
    if codebits == 8:
        assert cw.nseg == 3


@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize("k", [None, 16, 256])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5])
def test_sparse_linear_matches_linear(batch, k, density):
    lin = nn.Linear(600, 37)
    with torch.no_grad():
        lin.weight.copy_(_sparse_weight((37, 600), density, 2, k))
        lin.weight[3] = 0
    sl = SparseLinear.from_dense(lin.weight.detach(), lin.bias.detach())
    x = torch.randn(batch, 600)
    with torch.no_grad():
        assert_rel_close(sl(x), lin(x))


def test_sparse_linear_autograd_and_leading_dims():
    lin = nn.Linear(30, 7)
    with torch.no_grad():
        lin.weight.mul_((torch.rand(7, 30) < 0.2).float())
    with pytest.warns(UserWarning):
        c = lin.weight.detach().to_sparse_csr()
    sl = SparseLinear.from_csr(30, 7, c.crow_indices(), c.col_indices(), c.values(), lin.bias.detach())
    x = torch.randn(5, 4, 30, requires_grad=True)
    torch.testing.assert_close(sl(x), lin(x), rtol=1e-5, atol=1e-6)
    sl(x).sum().backward()  # the torch path carries gradients to the input
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (1, 1, 1)])
@pytest.mark.parametrize("batch", [1, 4])
def test_sparse_conv_matches_conv(stride, padding, dilation, batch):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=padding, dilation=dilation)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) < 0.3).float())
        conv.weight[1] = 0
    sc = SparseConv2d.from_conv(conv)
    x = torch.randn(batch, 3, 11, 9)
    with torch.no_grad():
        assert_rel_close(sc(x), conv(x))


def test_double_to_and_state_dict():
    lin = nn.Linear(50, 6)
    with torch.no_grad():
        lin.weight.copy_(_sparse_weight((6, 50), 0.2, 3, 8))
    sl = SparseLinear.from_dense(lin.weight.detach(), lin.bias.detach())
    sd = sl.state_dict()
    assert set(sd) == {"seg_ptr", "entries", "codebook", "values", "bias"}
    x = torch.randn(4, 50, dtype=torch.float64)
    sl.double()
    assert sl.codebook.dtype == torch.float64 and sl.entries.dtype == torch.uint16
    with torch.no_grad():
        torch.testing.assert_close(sl(x), lin.double()(x), rtol=1e-12, atol=1e-12)
    other = SparseLinear.from_dense(torch.zeros(6, 50) + (lin.weight.float() != 0), None)
    assert other.nnz == sl.nnz
    sl2 = SparseLinear.from_dense(lin.weight.detach().float(), lin.bias.detach().float())
    sl2.load_state_dict({k: v.clone() for k, v in sl2.state_dict().items()})
    assert sl2.to(torch.float32).codebook.dtype == torch.float32


@pytest.mark.parametrize("batch", [1, 5])
def test_sparse_conv_multi_segment_codebook(batch):
    """A 256-value codebook leaves 8 column bits: 40·3·3 = 360 columns span 2 segments."""
    torch.manual_seed(1)
    conv = nn.Conv2d(40, 6, 3, padding=1)
    cb = torch.linspace(-0.5, 0.5, 256)
    with torch.no_grad():
        w = cb[torch.randint(0, 256, conv.weight.shape)] * (torch.rand_like(conv.weight) < 0.4)
        conv.weight.copy_(w)
    sc = SparseConv2d.from_conv(conv)
    assert sc.colbits == 8 and sc.nseg == 2 and sc.mode == 0
    x = torch.randn(batch, 40, 7, 6)
    with torch.no_grad():
        assert_rel_close(sc(x), conv(x))


def test_wrong_input_sizes_raise_not_crash():
    """The numba kernels do no bounds checks: a mismatched input must be refused first."""
    sl = SparseLinear.from_dense(torch.eye(4), None)
    sc = SparseConv2d.from_conv(nn.Conv2d(3, 2, 3))
    with torch.no_grad():
        for bad in (lambda: sl(torch.rand(2, 5)), lambda: sc(torch.rand(1, 1, 8, 8)),
                    lambda: sc(torch.rand(1, 3, 2, 8))):
            with pytest.raises(RuntimeError):
                bad()
