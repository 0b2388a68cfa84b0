import torch


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """``max|a − b| ≤ rel · max(|b|, 1)``: equal up to float summation order."""
    assert a.shape == b.shape and a.dtype == b.dtype
    err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(b.abs().max().item() if b.numel() else 0.0, 1.0)
    assert err <= rel * scale, f"max error {err:.3g} > {rel} x {scale:.3g}"
