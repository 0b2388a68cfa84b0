import pytest
import torch
from torch import nn

from sparsenet.inference import SparseConv2d, SparseLinear

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")


def csr_parts(w2d: torch.Tensor):
    c = w2d.to_sparse_csr()
    return c.crow_indices(), c.col_indices(), c.values()


@pytest.mark.parametrize("grad", [False, True])
def test_sparse_linear_matches_linear(grad):
    torch.manual_seed(0)
    lin = nn.Linear(30, 7)
    with torch.no_grad():
        lin.weight.mul_((torch.rand(7, 30) < 0.2).float())
    sl = SparseLinear(30, 7, *csr_parts(lin.weight.detach()), bias=lin.bias.detach().clone())
    x = torch.randn(5, 4, 30, requires_grad=grad)  # extra leading dims too
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(sl(x), lin(x), rtol=1e-5, atol=1e-6)
    if grad:  # the torch CSR path carries gradients to the input
        sl(x).sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_sparse_conv_matches_conv(stride, padding, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=padding, dilation=dilation)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) < 0.3).float())
    sc = SparseConv2d(
        conv, *csr_parts(conv.weight.detach().reshape(8, -1)), bias=conv.bias.detach().clone()
    )
    x = torch.randn(2, 3, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(sc(x), conv(x), rtol=1e-5, atol=1e-5)
