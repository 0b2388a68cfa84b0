"""Bits per layer: ``"conv=8,fc=5"`` by layer type, ``"fc3=6"`` by layer name, or a dict.

Type keys are ``conv`` (``nn.Conv1d/2d/3d``) and ``fc`` (``nn.Linear``). Any other key
must name a Linear or Conv layer of the model (a dotted module name such as
``features.0``). A name overrides its layer's type; layers covered by no key are not
shared.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..errors import SpecError
from .codebook import MAX_BITS

__all__ = ["TYPE_KEYS", "shareable_layers", "parse_bits_spec", "resolve_bits"]

TYPE_KEYS: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "fc": (nn.Linear,),
}


def shareable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and Conv layers of ``model`` by qualified name, in module order."""
    kinds = tuple(t for ts in TYPE_KEYS.values() for t in ts)
    return {
        name: m
        for name, m in model.named_modules()
        if name and isinstance(m, kinds) and ".parametrizations." not in name
    }


def _check_bits(key: str, value: object, spec: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BITS:
        raise SpecError(
            f"bad bits spec {spec!r}: {key}={value!r}; expected an integer in 1..{MAX_BITS}"
        )
    return value


def parse_bits_spec(spec: str) -> dict[str, int]:
    """Parse ``"conv=8,fc=5,fc3=6"`` into ``{"conv": 8, "fc": 5, "fc3": 6}``.

    Raises
    ------
    SpecError
        On an empty spec, a part without ``=``, a repeated key, or bits that are not an
        integer in 1..15.
    """
    out: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise SpecError(f"bad bits spec {spec!r}: {part!r} is not of the form NAME=BITS")
        if key in out:
            raise SpecError(f"bad bits spec {spec!r}: {key!r} given twice")
        try:
            bits = int(value)
        except ValueError:
            raise SpecError(
                f"bad bits spec {spec!r}: {key}={value!r}; expected an integer in 1..{MAX_BITS}"
            ) from None
        out[key] = _check_bits(key, bits, spec)
    if not out:
        raise SpecError(f"empty bits spec {spec!r}; expected e.g. conv=8,fc=5 or fc3=6")
    return out


def resolve_bits(model: nn.Module, bits: str | Mapping[str, int]) -> dict[str, int]:
    """Bits for each layer to share, ``{layer_name: bits}`` in module order.

    Parameters
    ----------
    model : the network.
    bits : a spec string (see :func:`parse_bits_spec`) or a mapping of type keys and
        layer names to bits.

    Raises
    ------
    SpecError
        On a malformed spec, a key that is neither a type key nor a Linear/Conv layer of
        ``model``, or a spec that selects no layer.
    """
    if isinstance(bits, str):
        table = parse_bits_spec(bits)
    elif isinstance(bits, Mapping):
        table = {str(k): _check_bits(str(k), v, dict(bits)) for k, v in bits.items()}
        if not table:
            raise SpecError("empty bits mapping; expected e.g. {'conv': 8, 'fc': 5}")
    else:
        raise SpecError(f"bits={bits!r}; expected a spec string like 'conv=8,fc=5' or a dict")
    layers = shareable_layers(model)
    unknown = [k for k in table if k not in TYPE_KEYS and k not in layers]
    if unknown:
        raise SpecError(
            f"bits spec: unknown layer or type {unknown[0]!r}; expected one of "
            f"{sorted(TYPE_KEYS)} or a layer name in {list(layers)}"
        )
    out: dict[str, int] = {}
    for name, module in layers.items():
        if name in table:
            out[name] = table[name]
            continue
        for key, types in TYPE_KEYS.items():
            if key in table and isinstance(module, types):
                out[name] = table[key]
    if not out:
        raise SpecError(f"bits spec {dict(table)} selects no layer of the model")
    return out
