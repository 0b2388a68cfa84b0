"""Model -> graph record: a JSON module tree plus the model's torch.fx graph.

The record (``RECORD_FORMAT``, version 1)::

    {"format": "sparsenet-graph", "version": 1,
     "modules": [{"name": "features.0", "type": "Conv2d", "kwargs": {...}},
                 {"name": "fc", "swap": "lowrank"}, ...],       # leaves, in module order
     "tensors": [{"name": "cls_token", "shape": [1, 1, 64], "dtype": "float32",
                  "parameter": true}, ...],                     # on non-leaf modules
     "nodes": [{"op": "placeholder", "name": "x", "target": "x"},
               {"op": "call_module", "name": "features_0", "target": "features.0",
                "args": [{"node": "x"}], "kwargs": {}},
               {"op": "call_function", "name": "add", "target": "operator.add", ...},
               {"op": "output", "name": "output", "target": "output", "args": [...]}]}

Leaves are the whitelisted torch.nn layers (:mod:`.leaves`) and sparsenet's module swaps
(classes with ``transform_kind``: low-rank pairs, truncated activations), which the file's
``transforms`` list rebuilds. Everything else is traced through with ``torch.fx`` in eval
mode, so Python control flow is resolved at save time and functional code reading
``self.training`` is recorded as in eval mode (use ``nn.Dropout`` modules for train-time
behaviour). Function and method targets are recorded by their names in :mod:`.ops`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from torch import fx, nn
from torch.nn.utils import parametrize

from ..errors import SparsenetError
from .codec import DTYPES, encode_arg
from .leaves import leaf_kwargs, leaf_type
from .ops import ATTRIBUTES, METHODS, function_name

__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "RecordError", "record_model", "check_recordable"]

RECORD_FORMAT = "sparsenet-graph"
RECORD_VERSION = 1
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_PATH = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class RecordError(SparsenetError):
    """A model whose architecture cannot be recorded in a file (load it with ``model=``)."""


def _is_swap(m: nn.Module) -> bool:
    return getattr(type(m), "transform_kind", None) is not None


def _is_leaf(m: nn.Module) -> bool:
    return leaf_type(m) is not None or _is_swap(m)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_leaf(m)


def _fail(name: str, reason: str) -> RecordError:
    return RecordError(
        f"{name}: cannot record the architecture ({reason}); save it anyway with a registry "
        "model, or load the file with model=<an instance>"
    )


def _walk(model: nn.Module, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """Leaf modules and free tensors in module order; also every recordable tensor path."""
    modules: list[dict[str, Any]] = []
    tensors: list[dict[str, Any]] = []
    paths: set[str] = set()

    def visit(prefix: str, m: nn.Module) -> None:
        pre = f"{prefix}." if prefix else ""
        if prefix and _is_leaf(m):
            if _is_swap(m):
                modules.append({"name": prefix, "swap": type(m).transform_kind})  # type: ignore[attr-defined]
            else:
                modules.append({"name": prefix, "type": leaf_type(m), "kwargs": leaf_kwargs(m)})
            paths.update(pre + k for k in _state_keys(m))
            return
        if prefix and not _PATH.match(prefix):
            raise _fail(name, f"module name {prefix!r} is not a dotted identifier")
        if parametrize.is_parametrized(m):
            raise _fail(name, f"{prefix or 'the root module'} ({type(m).__name__}) has "
                        "parametrised tensors of its own")
        for t, v in list(m._parameters.items()) + list(m._buffers.items()):
            if v is None or t in m._non_persistent_buffers_set:
                continue
            if v.dtype not in _DTYPE_NAMES:
                raise _fail(name, f"tensor {pre + t} has dtype {v.dtype}")
            tensors.append({"name": pre + t, "shape": list(v.shape),
                            "dtype": _DTYPE_NAMES[v.dtype], "parameter": t in m._parameters})
            paths.add(pre + t)
        for child_name, child in m._modules.items():
            if child is not None:
                visit(pre + child_name, child)

    visit("", model)
    return modules, tensors, paths


def _state_keys(m: nn.Module) -> list[str]:
    """Effective tensor names of a leaf (parametrised ones by their plain name)."""
    keys = [k for k in m.state_dict() if not k.startswith("parametrizations.")]
    if parametrize.is_parametrized(m):
        keys += list(m.parametrizations.keys())  # type: ignore[union-attr,operator]
    return keys


def _node_record(node: fx.Node, name: str, leaves: set[str], paths: set[str]) -> dict[str, Any]:
    def fail(reason: str) -> RecordError:
        return _fail(name, f"node {node.name}: {reason}")

    op, target = node.op, node.target
    if op == "call_function":
        tname = function_name(target)
        if tname is None:
            what = getattr(target, "__module__", "?") + "." + getattr(target, "__name__", str(target))
            raise fail(f"function {what} is not in sparsenet.graph.ops.FUNCTIONS")
        if tname == "builtins.getattr" and (len(node.args) != 2 or node.args[1] not in ATTRIBUTES):
            raise fail(f"getattr of {node.args[1:]!r}; only {sorted(ATTRIBUTES)} are recorded")
        target = tname
    elif op == "call_method":
        if target not in METHODS:
            raise fail(f"tensor method {target!r} is not in sparsenet.graph.ops.METHODS")
    elif op == "call_module":
        if target not in leaves:
            raise fail(f"module {target!r} is not a recorded leaf")
    elif op == "get_attr":
        if target not in paths:
            raise fail(f"attribute {target!r} is not a parameter or persistent buffer "
                       "(a tensor constant, or a non-persistent buffer)")
    elif op == "placeholder":
        if not str(target).isidentifier():
            raise fail(f"input {target!r} (variadic inputs are not recorded)")
    out: dict[str, Any] = {"op": op, "name": node.name, "target": target}
    if node.args:
        out["args"] = [encode_arg(a, fail) for a in node.args]
    if node.kwargs:
        out["kwargs"] = {k: encode_arg(v, fail) for k, v in node.kwargs.items()}
    return out


def record_model(model: nn.Module) -> dict[str, Any]:
    """The graph record of ``model`` (JSON-able); raises :class:`RecordError` if impossible.

    The model is traced in eval mode with its forward hooks set aside; both are restored
    afterwards.
    """
    name = type(model).__name__
    modules, tensors, paths = _walk(model, name)
    modes = {m: m.training for m in model.modules()}
    # Hooks (activation penalties, user probes) must not see the tracer's proxies.
    hooks = {m: (m._forward_hooks, m._forward_pre_hooks) for m in model.modules()}
    model.eval()
    try:
        for m in hooks:
            m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
        graph = _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises anything on untraceable code
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise _fail(name, f"torch.fx cannot trace its forward: {msg}") from None
    finally:
        for m, t in modes.items():
            m.training = t
        for m, (fwd, pre) in hooks.items():
            m._forward_hooks, m._forward_pre_hooks = fwd, pre
    leaves = {m["name"] for m in modules}
    nodes = [_node_record(n, name, leaves, paths) for n in graph.nodes]
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "modules": modules,
            "tensors": tensors, "nodes": nodes}


def check_recordable(model: nn.Module) -> None:
    """Raise :class:`RecordError` now if ``model``'s architecture cannot be recorded.

    Registry models (``model.arch``) always can; call this before long work on a custom one.
    """
    if isinstance(getattr(model, "arch", None), dict):
        return
    record_model(model)
