import pytest
import torch

from sparsenet.sparse_coding.pooling import (
    local_max_pool,
    pooled_grid,
    pyramid_max_pool,
    pyramid_size,
    split_polarity,
)


def _grid(n=2, gh=8, gw=8, k=3, seed=0):
    return torch.randn(n, gh, gw, k, generator=torch.Generator().manual_seed(seed))


def test_local_pool_shapes_on_known_grids():
    y = _grid(gh=12, gw=12)
    assert local_max_pool(y).shape == (2, 3, 3, 3)  # 4×4, non-overlapping
    assert local_max_pool(y, 4, 2).shape == (2, 5, 5, 3)
    assert pooled_grid(12, 12, 4, 2) == (5, 5)
    assert local_max_pool(_grid(gh=9, gw=7), 3, 1).shape == (2, 7, 5, 3)


def test_local_pool_is_the_max_of_each_neighbourhood():
    y = _grid(gh=12, gw=12)
    z = local_max_pool(y, 4, 2)
    for i in range(5):
        for j in range(5):
            want = y[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4, :].amax(dim=(1, 2))
            assert torch.equal(z[:, i, j], want)


def test_pyramid_shape_and_values_on_8x8_grid():
    y = _grid(gh=8, gw=8, k=3)
    f = pyramid_max_pool(y, (1, 2, 4))
    assert pyramid_size((1, 2, 4)) == 21
    assert f.shape == (2, 21 * 3)
    assert torch.equal(f[:, 0:3], y.amax(dim=(1, 2)))
    # level 2, cell (1, 0) = rows 4:8, cols 0:4 → columns 3 + 2·3 .. 3 + 3·3
    assert torch.equal(f[:, 9:12], y[:, 4:8, 0:4].amax(dim=(1, 2)))
    # level 4, last cell (3, 3) = rows 6:8, cols 6:8
    assert torch.equal(f[:, -3:], y[:, 6:8, 6:8].amax(dim=(1, 2)))


def test_pyramid_on_uneven_grid_covers_every_cell():
    y = torch.zeros(1, 5, 5, 1)
    y[0, 4, 4, 0] = 1.0  # only the bottom-right corner is hot
    f = pyramid_max_pool(y, (1, 2))
    assert f.shape == (1, 5)
    assert f.tolist() == [[1.0, 0.0, 0.0, 0.0, 1.0]]


def test_split_polarity():
    c = torch.tensor([[1.5, -2.0, 0.0]])
    assert split_polarity(c).tolist() == [[1.5, 0.0, 0.0, 0.0, 2.0, 0.0]]


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: local_max_pool(torch.rand(2, 4, 4)), "codes"),
        (lambda: local_max_pool(torch.rand(1, 3, 3, 2), 4), "size"),
        (lambda: local_max_pool(torch.rand(1, 8, 8, 2), 4, 0), "stride"),
        (lambda: pyramid_max_pool(torch.rand(1, 3, 3, 2), (1, 4)), "levels"),
        (lambda: pyramid_max_pool(torch.rand(1, 3, 3, 2), ()), "levels"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
