"""Resident weight memory of a model: the bytes of every parameter and buffer it holds."""

from __future__ import annotations

from torch import nn

__all__ = ["weight_bytes"]


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the distinct tensors in ``model``'s parameters and buffers (shared once).

    For the sparse runtime that is the compact indices, codebooks and biases; for the dense
    one the float weights. Plans add no weights (they address these tensors).
    """
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        ptr = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        if ptr in seen and t.numel():
            continue
        seen.add(ptr)
        total += t.numel() * t.element_size()
    return total
