"""Graph record -> ``torch.fx.GraphModule``, through the whitelists and nothing else.

Every string of the record that reaches the code torch.fx generates is checked first: node
names and keyword names are identifiers, module and tensor paths are dotted
``[A-Za-z0-9_]`` names that the record itself defines, function targets are keys of
:data:`.ops.FUNCTIONS` (looked up there, never imported), method targets members of
:data:`.ops.METHODS`, constants only the JSON shapes of :mod:`.codec`. Anything else raises
:class:`~sparsenet.errors.CorruptFileError` naming it. Modules are built under the caller's
device context (``meta`` while shapes are checked, so a hostile size allocates nothing).
"""

from __future__ import annotations

import keyword
import re
from typing import Any

import torch
from torch import fx, nn

from ..errors import CorruptFileError
from .codec import DTYPES, decode_arg
from .leaves import build_leaf
from .ops import ATTRIBUTES, FUNCTIONS, METHODS
from .record import RECORD_FORMAT, RECORD_VERSION

__all__ = ["SwapSlot", "build_graph_module", "is_graph_arch", "check_slots_filled"]

MAX_NODES = 100_000
MAX_DIM = 1 << 40
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
_PATH = re.compile(r"^[A-Za-z0-9_]{1,200}(\.[A-Za-z0-9_]{1,200}){0,31}$")
_OPS = ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output")


class SwapSlot(nn.Module):
    """Where a module swap goes; the file's ``transforms`` list puts the real module here."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise CorruptFileError(f"a {self.kind!r} module swap was recorded but never rebuilt")


def is_graph_arch(arch: Any) -> bool:
    """True for an ``arch`` entry holding a graph record (``{"graph": {...}}``)."""
    return isinstance(arch, dict) and set(arch) == {"graph"}


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise CorruptFileError(f"graph record: {msg}")


def _path(p: Any, what: str) -> str:
    _need(
        isinstance(p, str) and bool(_PATH.match(p)) and not any(
            s.startswith("__") for s in p.split(".")
        ),
        f"{what} {str(p)[:80]!r} is not a dotted name of letters, digits and _",
    )
    return str(p)


def _install(root: nn.Module, path: str, leaves: set[str]) -> nn.Module:
    """The (new or existing) container module that will hold the last component of ``path``."""
    parent = root
    prefix = ""
    for part in path.split(".")[:-1]:
        prefix = f"{prefix}.{part}" if prefix else part
        _need(prefix not in leaves, f"{path!r} lies inside the leaf module {prefix!r}")
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    leaf = path.rpartition(".")[2]
    _need(
        leaf not in parent._modules and leaf not in parent._parameters
        and leaf not in parent._buffers,
        f"{path!r} is defined twice",
    )
    return parent


def _module_tree(record: dict[str, Any]) -> tuple[nn.Module, set[str]]:
    root = nn.Module()
    leaves: set[str] = set()
    for i, m in enumerate(record["modules"]):
        _need(isinstance(m, dict), f"module #{i} is not an object")
        name = _path(m.get("name"), f"module #{i} name")
        parent = _install(root, name, leaves)
        if "swap" in m:
            _need(set(m) == {"name", "swap"} and isinstance(m["swap"], str),
                  f"module {name!r}: malformed swap entry")
            module: nn.Module = SwapSlot(m["swap"][:40])
        else:
            _need(set(m) == {"name", "type", "kwargs"}, f"module {name!r}: malformed entry")
            module = build_leaf(name, m["type"], m["kwargs"])
        parent.add_module(name.rpartition(".")[2], module)
        leaves.add(name)
    for i, t in enumerate(record["tensors"]):
        _need(isinstance(t, dict) and set(t) == {"name", "shape", "dtype", "parameter"},
              f"tensor #{i} is malformed")
        name = _path(t["name"], f"tensor #{i} name")
        shape = t["shape"]
        _need(isinstance(shape, list) and len(shape) <= 16 and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_DIM for s in shape),
            f"tensor {name!r}: shape {str(shape)[:60]} is not a list of sizes")
        _need(t["dtype"] in DTYPES and isinstance(t["parameter"], bool),
              f"tensor {name!r}: bad dtype {str(t['dtype'])[:20]!r} or parameter flag")
        parent = _install(root, name, leaves)
        value = torch.empty(shape, dtype=DTYPES[t["dtype"]])
        attr = name.rpartition(".")[2]
        if t["parameter"]:
            parent.register_parameter(attr, nn.Parameter(value, value.is_floating_point()))
        else:
            parent.register_buffer(attr, value)
    return root, leaves


def _graph(record: dict[str, Any], leaves: set[str], tensor_paths: set[str]) -> fx.Graph:
    nodes = record["nodes"]
    _need(0 < len(nodes) <= MAX_NODES, f"{len(nodes)} nodes, expected 1..{MAX_NODES}")
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for i, n in enumerate(nodes):
        _need(isinstance(n, dict) and set(n) <= {"op", "name", "target", "args", "kwargs"},
              f"node #{i} is malformed")
        op, name, target = n.get("op"), n.get("name"), n.get("target")
        _need(op in _OPS, f"node #{i}: op {str(op)[:40]!r}, expected one of {_OPS}")
        _need(isinstance(name, str) and bool(_NAME.match(name)) and not keyword.iskeyword(name)
              and name not in env, f"node #{i}: name {str(name)[:60]!r} is not a new identifier")
        args, kwargs = n.get("args", []), n.get("kwargs", {})
        _need(isinstance(args, list) and isinstance(kwargs, dict)
              and all(isinstance(k, str) and _NAME.match(k) for k in kwargs),
              f"node {name}: args/kwargs malformed")
        a = tuple(decode_arg(x, env) for x in args)
        kw = {k: decode_arg(v, env) for k, v in kwargs.items()}
        tgt: Any = target
        if op == "call_function":
            _need(isinstance(target, str) and target in FUNCTIONS,
                  f"node {name}: function {str(target)[:80]!r} is not whitelisted")
            if target == "builtins.getattr":
                _need(len(a) == 2 and not kw and a[1] in ATTRIBUTES,
                      f"node {name}: getattr may only read {sorted(ATTRIBUTES)}")
            tgt = FUNCTIONS[str(target)]
        elif op == "call_method":
            _need(isinstance(target, str) and target in METHODS,
                  f"node {name}: method {str(target)[:80]!r} is not whitelisted")
        elif op == "call_module":
            _need(target in leaves, f"node {name}: module {str(target)[:80]!r} is not recorded")
        elif op == "get_attr":
            _need(target in tensor_paths, f"node {name}: tensor {str(target)[:80]!r} is not recorded")
        elif op == "placeholder":
            _need(isinstance(target, str) and bool(_NAME.match(target)) and len(a) <= 1 and not kw,
                  f"node {name}: input {str(target)[:60]!r} is not an identifier")
        else:
            _need(i == len(nodes) - 1 and target == "output" and len(a) == 1 and not kw,
                  "the output node must be last and hold one value")
        env[name] = graph.create_node(op, tgt, a, kw, name=name)
    _need(nodes[-1].get("op") == "output", "the last node is not the output")
    return graph


def build_graph_module(record: Any) -> fx.GraphModule:
    """The runnable module of a graph record; CorruptFileError on anything off the whitelist.

    Call under ``torch.device("meta")`` to check shapes without allocating; the state-dict
    keys are the recorded model's, in the same order.
    """
    _need(isinstance(record, dict) and record.get("format") == RECORD_FORMAT,
          f"no {RECORD_FORMAT!r} format tag")
    _need(record.get("version") == RECORD_VERSION,
          f"version {str(record.get('version'))[:20]}, this sparsenet reads {RECORD_VERSION}")
    for key in ("modules", "tensors", "nodes"):
        _need(isinstance(record.get(key), list) and len(record[key]) <= MAX_NODES,
              f"{key!r} is not a list of at most {MAX_NODES}")
    root, leaves = _module_tree(record)
    tensor_paths = set(root.state_dict().keys()) | {
        n for n, _ in root.named_parameters()} | {n for n, _ in root.named_buffers()}
    graph = _graph(record, leaves, tensor_paths)
    try:
        graph.lint()
        gm = fx.GraphModule(root, graph, class_name="GraphModel")
    except Exception as exc:  # noqa: BLE001 - fx's checks raise assorted types
        raise CorruptFileError(f"graph record: not a valid graph ({str(exc)[:160]})") from None
    # The whole recorded tree, in its recorded order (fx copied only what the graph uses).
    for table in ("_modules", "_parameters", "_buffers"):
        getattr(gm, table).clear()
        getattr(gm, table).update(getattr(root, table))
    return gm


def check_slots_filled(model: nn.Module, source: str) -> None:
    """After the transforms were replayed: no :class:`SwapSlot` may remain."""
    for name, m in model.named_modules():
        if isinstance(m, SwapSlot):
            raise CorruptFileError(
                f"{source}: graph records a {m.kind!r} module swap at {name!r} but the file "
                "has no transform that rebuilds it"
            )
