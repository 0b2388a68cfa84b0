"""The module whitelist of the graph record: torch.nn layers a file may build, by type name.

Each leaf is recorded as ``{"name": "features.0", "type": "Conv2d", "kwargs": {...}}``; the
kwargs are the constructor arguments read back from the module's attributes (``bias`` from
whether the bias tensor exists), so building ``Conv2d(**kwargs)`` gives a module whose
state-dict shapes are those of the recorded one. The weights themselves come from the file.
Parametrised modules (masks, codebooks) are recorded as their class before
parametrisation: the file stores effective tensors.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from ..errors import CorruptFileError

__all__ = ["LEAF_TYPES", "leaf_type", "leaf_kwargs", "build_leaf"]

_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
    nn.ConvTranspose2d, nn.ConvTranspose3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.MultiheadAttention, nn.PReLU,
)  # fmt: skip
_STATELESS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.ReLU, nn.ReLU6, nn.LeakyReLU,
    nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Softplus, nn.Softmax, nn.LogSoftmax, nn.Identity, nn.MaxPool1d,
    nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.ZeroPad2d, nn.Upsample,
)  # fmt: skip
LEAF_TYPES: dict[str, type[nn.Module]] = {c.__name__: c for c in _LAYERS + _STATELESS}

# Constructor arguments that are not plain attributes of the built module.
_SKIP = {"device", "dtype", "_weight", "_freeze", "init", "min_value", "max_value"}
_BIAS_OF: dict[type, str] = {nn.MultiheadAttention: "in_proj_bias"}


def _params(cls: type[nn.Module]) -> list[str]:
    import inspect

    sig = inspect.signature(cls.__init__)
    # ``*args``/``**kwargs`` (``nn.Identity``'s whole signature) are no attributes to record
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [n for n, p in list(sig.parameters.items())[1:] if n not in _SKIP and p.kind not in variadic]


def leaf_type(module: nn.Module) -> str | None:
    """The whitelist name of ``module``'s (pre-parametrisation) class, or None."""
    cls = parametrize.type_before_parametrizations(module)
    name = cls.__name__
    return name if LEAF_TYPES.get(name) is cls else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def leaf_kwargs(module: nn.Module) -> dict[str, Any]:
    """Constructor kwargs of a whitelisted module, read from its attributes (JSON-able)."""
    cls = parametrize.type_before_parametrizations(module)
    out: dict[str, Any] = {}
    for p in _params(cls):
        if p == "bias":
            out[p] = getattr(module, _BIAS_OF.get(cls, "bias"), None) is not None
        elif p == "add_bias_kv":
            out[p] = getattr(module, "bias_k", None) is not None
        elif p == "unflattened_size":
            out[p] = [int(s) for s in module.unflattened_size]  # type: ignore[union-attr]
        else:
            out[p] = _jsonable(getattr(module, p))
    return out


def _arg_ok(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return not isinstance(v, str) or len(v) <= 64
    return isinstance(v, list) and len(v) <= 8 and all(
        x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v
    )


def build_leaf(name: str, type_name: Any, kwargs: Any) -> nn.Module:
    """Build a whitelisted module (call under ``torch.device("meta")``); CorruptFileError else."""
    cls = LEAF_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise CorruptFileError(
            f"graph module {name!r}: type {str(type_name)[:60]!r} is not a whitelisted "
            "torch.nn layer"
        )
    allowed = set(_params(cls))
    if not isinstance(kwargs, dict) or not set(kwargs) <= allowed:
        bad = sorted(set(kwargs) - allowed) if isinstance(kwargs, dict) else kwargs
        raise CorruptFileError(
            f"graph module {name!r} ({type_name}): bad constructor arguments {str(bad)[:80]}"
        )
    for k, v in kwargs.items():
        if not _arg_ok(v):
            raise CorruptFileError(
                f"graph module {name!r} ({type_name}): argument {k}={str(v)[:60]} is not a "
                "number, string, bool, null or short list of numbers"
            )
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(**args)
    except Exception as exc:  # noqa: BLE001 - any failure means the record is unusable
        raise CorruptFileError(
            f"graph module {name!r}: {type_name}({str(kwargs)[:80]}) cannot be built "
            f"({str(exc)[:100]})"
        ) from None
