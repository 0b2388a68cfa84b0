"""Bits per tensor: ``"conv=8,fc=5"`` by group, ``"fc3=6"`` by name, ``"blocks.*=4"`` by glob.

The spec is :func:`sparsenet.layers.parse_bits_spec`'s: keys are the groups ``fc``,
``conv``, ``embedding``, ``attention`` and ``all``, a compressible tensor's name (a dotted
module path such as ``features.0``, or ``attn.in_proj_weight``), or an fnmatch glob. The
most specific key wins (see :func:`sparsenet.layers.lookup`); attention and embedding
tensors take the ``fc`` value unless given their own. Tensors covered by no key are not
shared. One range for bits everywhere: :data:`sparsenet.layers.MIN_BITS` ..
:data:`sparsenet.layers.MAX_BITS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..errors import SpecError
from ..layers import compressible_tensors, parse_bits_spec, resolve_table

__all__ = ["shareable_layers", "parse_bits_spec", "resolve_bits"]


def shareable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules holding a compressible tensor, by tensor name, in module order.

    The module of ``attn.in_proj_weight`` is the ``nn.MultiheadAttention``; use
    :func:`sparsenet.layers.compressible_tensors` for the tensor itself.
    """
    return {t.name: t.module for t in compressible_tensors(model)}


def resolve_bits(model: nn.Module, bits: str | int | Mapping[str, int]) -> dict[str, int]:
    """Bits for each tensor to share, ``{tensor name: bits}`` in module order.

    Parameters
    ----------
    model : the network.
    bits : a spec string (see :func:`sparsenet.layers.parse_bits_spec`), an int (every
        tensor) or a mapping of groups, names and globs to bits.

    Raises
    ------
    SpecError
        On a malformed spec, a key that is neither a group nor selects a compressible
        tensor of ``model``, or a spec that selects no tensor.
    """
    table = parse_bits_spec(bits)
    out = resolve_table(model, table, what="bits spec")
    if not out:
        raise SpecError(f"bits spec {dict(table)} selects no layer of the model")
    return out
