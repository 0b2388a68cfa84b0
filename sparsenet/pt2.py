"""``torch.export`` archives (``.pt2``) read without ``torch.export.load``.

``torch.export.load`` is not safe on a file from elsewhere: it unpickles weights and
constants with ``weights_only=False`` (and opaque objects with ``pickle.loads``), resolves
operator names to any ``torch.*`` attribute, and parses symbolic-shape expressions with
sympy. This module reads the archive as a zip of JSON and raw little-endian tensor bytes
and translates the exported ATen graph into a :mod:`sparsenet.graph` record:
``aten.linear`` / ``aten.conv{1,2}d`` on parameters become ``nn.Linear`` / ``nn.Conv{1,2}d``
modules named after the parameters (so pruning, sharing and coding see ordinary layers),
the other supported ATen ops become whitelisted torch functions (:data:`ATEN`). The record
is then built by :func:`sparsenet.graph.build_graph_module`, through the same whitelists
as any ``.snn``. Pickled weights, constants, custom objects, dynamic shapes, buffer
mutations and ops outside :data:`ATEN` are refused with :class:`ModelSourceError`.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import torch
from torch import nn

from .errors import ModelSourceError, SparsenetError

__all__ = ["ATEN", "load_pt2", "pt2_record"]

# aten op (without the "torch.ops.aten." prefix) -> whitelist function (sparsenet.graph.ops);
# arguments are passed positionally in schema order, which these functions share.
ATEN: dict[str, str] = {
    "relu.default": "torch.relu", "sigmoid.default": "torch.sigmoid",
    "tanh.default": "torch.tanh", "gelu.default": "torch.nn.functional.gelu",
    "silu.default": "torch.nn.functional.silu", "flatten.using_ints": "torch.flatten",
    "view.default": "torch.reshape", "reshape.default": "torch.reshape",
    "add.Tensor": "torch.add", "sub.Tensor": "torch.sub", "mul.Tensor": "torch.mul",
    "div.Tensor": "torch.div", "matmul.default": "torch.matmul", "t.default": "torch.t",
    "permute.default": "torch.permute", "transpose.int": "torch.transpose",
    "cat.default": "torch.cat", "mean.dim": "torch.mean", "sum.dim_IntList": "torch.sum",
    "softmax.int": "torch.softmax", "log_softmax.int": "torch.log_softmax",
    "dropout.default": "torch.dropout", "unsqueeze.default": "torch.unsqueeze",
    "squeeze.dim": "torch.squeeze", "max_pool2d.default": "torch.nn.functional.max_pool2d",
    "avg_pool2d.default": "torch.nn.functional.avg_pool2d",
    "adaptive_avg_pool2d.default": "torch.nn.functional.adaptive_avg_pool2d",
    "layer_norm.default": "torch.layer_norm", "linear.default": "torch.nn.functional.linear",
    "conv1d.default": "torch.nn.functional.conv1d",
    "conv2d.default": "torch.nn.functional.conv2d",
}  # fmt: skip
_DTYPES = {1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64,
           6: torch.float16, 7: torch.float32, 8: torch.float64, 12: torch.bool,
           13: torch.bfloat16}  # torch._export.serde.schema.ScalarType
_MAX_JSON = 64 << 20


def _error(path: str, msg: str) -> SparsenetError:
    return ModelSourceError(f"{path}: {msg}")


class _Archive:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise _error(path, f"not a torch.export archive ({exc})") from None
        names = self.zip.namelist()
        models = [n for n in names if n.count("/") == 2 and n.split("/")[1] == "models"
                  and n.endswith(".json")]
        if len(models) != 1:
            raise _error(path, f"expected one exported program, found {len(models)}")
        self.prefix = models[0].split("/")[0]
        self.model_name = models[0].rsplit("/", 1)[1][: -len(".json")]
        self.names = set(names)
        # a member may inflate to at most this (zip bombs), like the .snn decode budget
        self.budget = max(_MAX_JSON, 1024 * os.path.getsize(path))

    def read(self, rel: str, limit: int = _MAX_JSON) -> bytes:
        name = f"{self.prefix}/{rel}"
        if name not in self.names:
            raise _error(self.path, f"archive lacks {rel}")
        info = self.zip.getinfo(name)
        if info.file_size > limit:
            raise _error(self.path, f"{rel} is {info.file_size:,} bytes, over {limit:,}")
        return self.zip.read(name)

    def json(self, rel: str) -> Any:
        try:
            return json.loads(self.read(rel))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _error(self.path, f"{rel} is not JSON ({str(exc)[:80]})") from None


def _int(v: Any) -> int:
    if not (isinstance(v, dict) and isinstance(v.get("as_int"), int)):
        raise ValueError("a symbolic size (dynamic shapes are not supported)")
    return int(v["as_int"])


def _weights(ar: _Archive) -> dict[str, torch.Tensor]:
    if ar.read("byteorder", 16) != b"little":
        raise _error(ar.path, "only little-endian archives are read")
    cfg = ar.json(f"data/weights/{ar.model_name}_weights_config.json").get("config", {})
    consts = ar.json(f"data/constants/{ar.model_name}_constants_config.json").get("config")
    if consts:
        raise _error(ar.path, f"tensor constants / custom objects {sorted(consts)[:3]} are not read")
    out: dict[str, torch.Tensor] = {}
    for fqn, meta in cfg.items():
        try:
            if meta.get("use_pickle"):
                raise ValueError("stored pickled (refused: unpickling runs code)")
            tm = meta["tensor_meta"]
            dtype = _DTYPES[tm["dtype"]]
            if tm.get("layout", 7) != 7:
                raise ValueError("not a strided tensor")
            sizes = [_int(s) for s in tm["sizes"]]
            strides = [_int(s) for s in tm["strides"]]
            offset = _int(tm["storage_offset"])
            name = str(meta["path_name"])
            if "/" in name or name.startswith("."):
                raise ValueError(f"path {name!r}")
            raw = ar.read(f"data/weights/{name}", limit=ar.budget)
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            need = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=True)) + 1
            if any(n < 0 or s < 0 for n, s in zip(sizes, strides, strict=True)) or (
                all(sizes) and need > flat.numel()
            ):
                raise ValueError(f"sizes {sizes} / strides {strides} run past its {flat.numel()} values")
            out[fqn] = torch.as_strided(flat, sizes, strides, offset).clone()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise _error(ar.path, f"weight {str(fqn)[:60]!r}: {str(exc)[:120]}") from None
    return out


def _arg(a: Any) -> Any:
    """An exported argument as a sparsenet.graph JSON argument."""
    if not isinstance(a, dict) or len(a) != 1:
        raise ValueError(f"argument {str(a)[:60]}")
    ((k, v),) = a.items()
    if k == "as_tensor":
        return {"node": v["name"]}
    if k == "as_tensors":
        return [{"node": t["name"]} for t in v]
    if k in ("as_int", "as_float", "as_bool", "as_string"):
        return v
    if k in ("as_ints", "as_floats", "as_bools"):
        return list(v)
    if k == "as_none":
        return None
    if k == "as_scalar_type" and v in _DTYPES:
        return {"dtype": str(_DTYPES[v]).removeprefix("torch.")}
    raise ValueError(f"argument kind {k!r}")


def pt2_record(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(graph record, state dict)`` of a ``.pt2`` archive; ModelSourceError if unsupported."""
    p = os.fspath(path)
    ar = _Archive(p)
    weights = _weights(ar)
    prog = ar.json(f"models/{ar.model_name}.json")
    try:
        return _translate(prog, weights), weights
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _error(p, f"unsupported exported program ({str(exc)[:160]})") from None


def _translate(prog: dict[str, Any], weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    from .graph import RECORD_FORMAT, RECORD_VERSION

    if prog.get("range_constraints"):
        raise ValueError("dynamic shapes")
    gm = prog["graph_module"]
    graph, sig = gm["graph"], gm["signature"]
    params: dict[str, str] = {}  # placeholder name -> FQN
    nodes: list[dict[str, Any]] = []
    for spec in sig["input_specs"]:
        ((kind, v),) = spec.items()
        if kind == "parameter":
            params[v["arg"]["name"]] = v["parameter_name"]
        elif kind == "buffer":
            params[v["arg"]["name"]] = v["buffer_name"]
        elif kind == "user_input":
            name = v["arg"]["as_tensor"]["name"]
            nodes.append({"op": "placeholder", "name": name, "target": name})
        else:
            raise ValueError(f"input kind {kind}")
    for fqn in params.values():
        if fqn not in weights:
            raise ValueError(f"no stored weight for {fqn}")
    modules: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for n in graph["nodes"]:
        target = str(n["target"]).removeprefix("torch.ops.aten.")
        outs = n["outputs"]
        if len(outs) != 1 or "as_tensor" not in outs[0]:
            raise ValueError(f"{target}: only single-tensor outputs")
        out = outs[0]["as_tensor"]["name"]
        args = [_arg(i["arg"]) for i in n["inputs"] if i.get("kind", 1) == 1]
        kwargs = {i["name"]: _arg(i["arg"]) for i in n["inputs"] if i.get("kind", 1) != 1}
        layer = None if kwargs else _as_layer(target, args, params, weights)
        if layer is not None:
            mname, leaf = layer
            if modules.setdefault(mname, leaf) != leaf:
                raise ValueError(f"{mname} used as two different layers")
            used.update(f"{mname}.{t}" for t in ("weight", "bias"))
            nodes.append({"op": "call_module", "name": out, "target": mname, "args": [args[0]]})
            continue
        if target not in ATEN:
            raise ValueError(f"op aten.{target} is not supported")
        nodes.append({"op": "call_function", "name": out, "target": ATEN[target], "args": args,
                      "kwargs": kwargs})
    # parameters used other than as a layer's weight: get_attr of a free tensor
    getattrs, tensors = [], []
    for ph, fqn in params.items():
        if fqn in used:
            continue
        if "." in fqn and fqn.rpartition(".")[0] in modules:
            raise ValueError(f"{fqn} is used both inside and outside its layer")
        t = weights[fqn]
        tensors.append({"name": fqn, "shape": list(t.shape), "dtype": str(t.dtype)[6:],
                        "parameter": True})
        getattrs.append({"op": "get_attr", "name": ph, "target": fqn})
    outputs = [_arg(o) for o in graph["outputs"]]
    for spec in sig["output_specs"]:
        if set(spec) != {"user_output"}:
            raise ValueError(f"output kind {sorted(spec)} (buffer mutation?)")
    result = outputs[0] if len(outputs) == 1 else {"tuple": outputs}
    first = sum(1 for x in nodes if x["op"] == "placeholder")
    nodes = nodes[:first] + getattrs + nodes[first:]
    nodes.append({"op": "output", "name": "output", "target": "output", "args": [result]})
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION,
            "modules": [{"name": k, **v} for k, v in modules.items()],
            "tensors": tensors, "nodes": nodes}


def _as_layer(
    target: str, args: list[Any], params: dict[str, str], weights: dict[str, torch.Tensor]
) -> tuple[str, dict[str, Any]] | None:
    """``(module name, {"type", "kwargs"})`` if the op is a layer on its own parameters."""
    if target not in ("linear.default", "conv1d.default", "conv2d.default"):
        return None
    ref = [a["node"] if isinstance(a, dict) and "node" in a else None for a in args[1:3]]
    wfqn = params.get(ref[0] or "")
    if wfqn is None or not wfqn.endswith(".weight"):
        return None
    mname = wfqn[: -len(".weight")]
    bias = len(args) > 2 and args[2] is not None
    if bias and params.get(ref[1] or "") != f"{mname}.bias":
        return None
    w = weights[wfqn]
    if target == "linear.default":
        return mname, {"type": "Linear", "kwargs": {
            "in_features": w.shape[1], "out_features": w.shape[0], "bias": bias}}
    stride, padding, dilation, groups = (args + [[1], [0], [1], 1][len(args) - 3 :])[3:7]
    nd = len(w.shape) - 2
    stride, dilation = (list(v) * (nd if len(v) == 1 else 1) for v in (stride, dilation))
    pad = padding if isinstance(padding, str) else list(padding) * (nd if len(padding) == 1 else 1)
    return mname, {"type": "Conv2d" if target == "conv2d.default" else "Conv1d", "kwargs": {
        "in_channels": w.shape[1] * int(groups), "out_channels": w.shape[0],
        "kernel_size": list(w.shape[2:]), "stride": list(stride), "padding": pad,
        "dilation": list(dilation), "groups": int(groups), "bias": bias,
        "padding_mode": "zeros"}}


def load_pt2(path: str | os.PathLike[str]) -> nn.Module:
    """A ``.pt2`` archive as a runnable module (a GraphModule of ordinary layers), eval mode."""
    from .errors import CorruptFileError
    from .graph import build_graph_module

    record, weights = pt2_record(path)
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build_graph_module(record).state_dict().items()}
        if shapes != {k: tuple(v.shape) for k, v in weights.items()}:
            raise CorruptFileError("layer shapes do not match the stored weights")
        model = build_graph_module(record)
        model.load_state_dict(weights)
    except CorruptFileError as exc:
        raise _error(os.fspath(path), str(exc)) from None
    return model.eval()
