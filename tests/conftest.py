import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_data():
    from sparsenet.data import digits

    return digits()
