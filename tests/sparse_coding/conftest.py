import subprocess
import sys

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


@pytest.fixture
def loads_the_same():
    """:func:`_loads_the_same_in_a_fresh_process`, for tests."""
    return _loads_the_same_in_a_fresh_process


def _loads_the_same_in_a_fresh_process(model, xt, tmp_path, check: str = "") -> bool:
    """Save ``model``, load it in a new interpreter and compare ``decision_function(xt)``
    exactly; ``check``: one more Python statement run on the loaded ``m`` there."""
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "xt.npy", xt)
    np.save(tmp_path / "want.npy", model.decision_function(xt))
    code = (
        "import sys, numpy as np\n"
        "from sparsenet.sparse_coding import DeepSC\n"
        "d = sys.argv[1]; m = DeepSC.load(d + '/m.npz')\n"
        f"{check}\n"
        "ok = np.array_equal(m.decision_function(np.load(d + '/xt.npy')), np.load(d + '/want.npy'))\n"
        "sys.exit(0 if ok else 1)\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 0
