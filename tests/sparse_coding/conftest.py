import numpy as np
import pytest


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = m - m.mean(1, keepdims=True)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def digit_problem(digits_data):
    """(X, D): 300 centred unit-norm digit images and 100 atoms taken from other digits."""
    x = digits_data.x_train.reshape(len(digits_data.x_train), -1).double().numpy()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    return _unit_rows(x[idx[:300]]), _unit_rows(x[idx[300:400]])
