"""The op whitelist of the graph record: the only functions and methods a file may name.

A recorded ``call_function`` node names its target by a key of :data:`FUNCTIONS`
(``"operator.add"``, ``"torch.flatten"``, ``"torch.nn.functional.relu"``...), a
``call_method`` node by a member of :data:`METHODS` (``"view"``, ``"permute"``...), and
``builtins.getattr`` may only read the attributes in :data:`ATTRIBUTES`. Loading looks the
names up in these tables and nowhere else, so a file cannot reach ``os.system`` or
``builtins.eval``: an unknown name is an error, never an import. Every entry is a pure
tensor computation (no I/O, no allocation sized by a file-supplied constant other than
what an ordinary forward pass does).
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["FUNCTIONS", "METHODS", "ATTRIBUTES", "function_name"]

_OPERATORS = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "neg", "pos",
    "getitem", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "invert", "abs",
)  # fmt: skip
_TORCH = (
    "flatten", "cat", "concat", "stack", "reshape", "permute", "transpose", "squeeze",
    "unsqueeze", "chunk", "split", "narrow", "add", "sub", "mul", "div", "matmul", "bmm",
    "mm", "einsum", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "exp", "log",
    "sqrt", "rsqrt", "abs", "neg", "mean", "sum", "amax", "amin", "max", "min", "argmax",
    "clamp", "where", "masked_fill", "layer_norm", "dropout", "t", "roll", "erf", "square",
    "pow", "maximum", "minimum", "cumsum", "flip", "tile", "baddbmm", "addmm",
)  # fmt: skip
_FUNCTIONAL = (
    "relu", "relu6", "gelu", "silu", "elu", "leaky_relu", "hardswish", "hardsigmoid",
    "mish", "softplus", "sigmoid", "tanh", "softmax", "log_softmax", "dropout", "linear",
    "conv1d", "conv2d", "conv3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "adaptive_max_pool2d", "layer_norm", "group_norm", "batch_norm",
    "embedding", "pad", "normalize", "scaled_dot_product_attention", "glu", "cross_entropy",
)  # fmt: skip


def _table() -> dict[str, Callable[..., Any]]:
    out: dict[str, Callable[..., Any]] = {}
    for name in _OPERATORS:
        out[f"operator.{name}"] = getattr(operator, name)
    for name in _TORCH:
        out[f"torch.{name}"] = getattr(torch, name)
    for name in _FUNCTIONAL:
        out[f"torch.nn.functional.{name}"] = getattr(F, name)
    out["builtins.getattr"] = builtins.getattr  # attribute names restricted to ATTRIBUTES
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = _table()

METHODS: frozenset[str] = frozenset(
    """view reshape permute transpose flatten unflatten squeeze unsqueeze expand expand_as
    contiguous chunk split size dim numel mean sum amax amin max min argmax relu sigmoid
    tanh softmax log_softmax exp log sqrt rsqrt abs neg add sub mul div matmul bmm pow
    clamp masked_fill t repeat float to type_as unbind narrow roll flip cumsum erf square
    """.split()
)

# ``x.shape`` / ``x.dtype`` reads in traced code become getattr(x, name) nodes.
ATTRIBUTES: frozenset[str] = frozenset({"shape", "dtype", "ndim", "T", "mT"})

_BY_ID: dict[int, str] = {}
for _name, _fn in FUNCTIONS.items():
    _BY_ID.setdefault(id(_fn), _name)


def function_name(fn: Any) -> str | None:
    """The whitelist name of callable ``fn`` (identity lookup), or None if it is not listed."""
    return _BY_ID.get(id(fn))
