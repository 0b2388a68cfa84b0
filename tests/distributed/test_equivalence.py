"""2 gloo ranks against 1 process: OBD, sensitivity, dictionary learning, masked/shared fine-tuning.

``_worker.py`` runs the same computations once under ``torch.distributed.run`` (2 ranks, each
passing the same data; the library shards it) and once here in this process (world size 1).
"""

import pytest
import torch

from . import _worker
from ._launch import ROOT, torchrun


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    torchrun([str(ROOT / "tests" / "distributed" / "_worker.py"), str(d / "two.pt")])
    _worker.main(str(d / "one.pt"))
    one = torch.load(d / "one.pt", weights_only=False)
    two = torch.load(d / "two.pt", weights_only=False)
    assert (one["world"], two["world"]) == (1, 2)
    return one, two


@pytest.mark.parametrize("form", ["full", "lm"])
def test_obd_hessian_diagonal_equals_single_process(runs, form):
    """Each rank sums its shard (151 and 150 of 301 samples); all_reduce then /N. Only the
    order of the float32 sums differs, so equal to ~1e-7 relative."""
    one, two = runs
    a, b = one[f"obd_{form}"], two[f"obd_{form}"]
    assert a.keys() == b.keys() and len(a) == 6
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-8, msg=key)


def test_sensitivity_scan_equals_single_process(runs):
    """Accuracies are integer counts summed over shards: exactly equal. Losses to rounding."""
    a, b = (r["sensitivity"] for r in runs)
    assert a["dense"]["accuracy"] == b["dense"]["accuracy"]
    assert a["layers"].keys() == b["layers"].keys()
    for name, row in a["layers"].items():
        assert b["layers"][name]["accuracy"] == row["accuracy"], name
        torch.testing.assert_close(b["layers"][name]["loss"], row["loss"], rtol=1e-6, atol=0)


def test_dictionary_after_n_steps_equals_single_process(runs):
    """Same mini-batches (same seed); codes of each half computed on its rank, A and B summed.
    float64 and coding tol=1e-10, so each code is the lasso optimum whatever batch it was solved
    in (the working-set solver groups samples differently on each rank; at a loose tol that
    shows up as ~1e-7 differences), and the dictionaries agree to 1e-10."""
    one, two = runs
    assert one["dictionary_steps"] == two["dictionary_steps"] == 16
    torch.testing.assert_close(two["dictionary"], one["dictionary"], rtol=0, atol=1e-10)
    torch.testing.assert_close(two["codes"], one["codes"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("stage", ["masked", "shared"])
def test_masks_and_codebooks_identical_after_ddp_fine_tuning(runs, stage):
    """Masks, code indices and keep-maps are equal bit for bit (rank 0's, and the debug check
    asserted all ranks agree after every epoch); trained floats to 1e-5 (DDP averages the
    two half-batch gradients, one process takes the mean over the whole batch)."""
    one, two = runs
    a, b = one[stage], two[stage]
    assert a.keys() == b.keys()
    fixed = [k for k in a if k.endswith(("mask", "indices", "keep"))]
    assert fixed and (stage == "masked" or any(k.endswith("indices") for k in fixed))
    for key in a:
        if key in fixed:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)
