"""The whole-model plan: a model's torch.fx graph compiled into one table of kernel steps.

:func:`attach_plan` traces the model (``torch.fx``; a ``GraphModule`` already is a graph),
propagates shapes for one input shape, and turns every node it knows into a step of the
int64 table that :func:`.kernels.run_plan` interprets in one compiled call, over one
preallocated float arena (one region per node, feature-major and batch-last). Steps name the
module buffers by address, so the plan holds no second copy of any weight.

Known nodes: Linear / Conv2d (sparse or dense), eval BatchNorm1d/2d (folded into the
preceding Linear/Conv when it is that layer's only user, a per-channel step otherwise),
ReLU / GELU / Tanh / Sigmoid (fused into the producing step where possible), Max/AvgPool2d,
AdaptiveAvgPool2d, Flatten / view / reshape to ``(B, -1)``, Identity / Dropout, and the
residual ``+``. Any other node runs as itself (per-node fallback, between compiled
segments); a model that cannot be traced runs per module. :meth:`Planned.describe` says
which, once.

The plan runs only where the module would give the same result without autograd: eval
mode, a CPU tensor of the plan's dtype, and no gradient wanted (``torch.is_grad_enabled()``
with an input or parameter that requires grad sends the call to the modules). It checks on
every call that the tensors it addresses are still the module's (``.to()``, ``.double()``,
``load_state_dict(assign=True)`` replace them; the plan is then rebuilt), and that folded
BatchNorm statistics have not changed in place.
"""

from __future__ import annotations

import operator
import threading
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..data import INPUT_SHAPES
from . import kernels as K
from .attention import SparseMultiheadAttention
from .layers import SPARSE_LAYERS, SparseConv2d, SparseLinear

__all__ = [
    "Planned", "attach_plan", "detach_plan", "plan_of", "PARALLEL_MIN_BATCH", "default_threads",
    "guess_input_shape",
]

PARALLEL_MIN_BATCH = 16
_ACT_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
              F.tanh: "tanh", F.sigmoid: "sigmoid"}
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_FUSABLE = (K.OP_LINEAR, K.OP_CONV, K.OP_AFFINE, K.OP_ADD, K.OP_POOL)


def _numba_threads() -> int:
    return int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))


def default_threads() -> int:
    """Threads for batches ≥ 16: torch's own budget, so the two pools never add up."""
    return max(1, min(torch.get_num_threads(), _numba_threads()))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (*SPARSE_LAYERS, SparseMultiheadAttention)) or super().is_leaf_module(m, qualname)


class _Unsupported(Exception):
    pass


class _Compiled:
    """One plan for one input feature shape and dtype."""

    def __init__(self, gm: fx.GraphModule, in_shape: tuple[int, ...], dtype: torch.dtype):
        self.gm, self.dtype = gm, dtype
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.rows: list[list[int]] = []
        self.refs: list[tuple[dict, str, torch.Tensor]] = []  # (owner dict, key, tensor)
        self.versions: list[tuple[torch.Tensor, int]] = []  # folded tensors
        self.owned: list[np.ndarray] = []  # derived arrays (folded BatchNorm)
        self.segments: list[tuple[str, Any]] = []
        self.fallback: list[str] = []
        self.size = 0  # arena features
        self.summary: list[str] = []
        x = torch.zeros((1, *in_shape), dtype=dtype)
        ShapeProp(gm).propagate(x)
        self.in_features = int(np.prod(in_shape))
        self._region: dict[fx.Node, int] = {}
        self._step_of: dict[fx.Node, int] = {}
        self._compile()
        self.arenas: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ building
    def _alloc(self, n: int) -> int:
        off = self.size
        self.size += n
        return off

    @staticmethod
    def _shape(node: fx.Node) -> tuple[int, ...] | None:
        tm = node.meta.get("tensor_meta")
        if tm is None or not hasattr(tm, "shape"):
            return None
        return tuple(int(s) for s in tm.shape[1:])

    def _ref(self, module: nn.Module, name: str) -> int:
        t = module._parameters.get(name) if name in module._parameters else module._buffers.get(name)
        if t is None or t.numel() == 0:
            return 0
        if t.device.type != "cpu" or not t.is_contiguous():
            raise _Unsupported(f"{name} not a contiguous CPU tensor")
        if t.is_floating_point() and t.dtype != self.dtype:
            raise _Unsupported(f"{name} is {t.dtype}, the input {self.dtype}")
        owner = module._parameters if name in module._parameters else module._buffers
        self.refs.append((owner, name, t))
        return int(t.data_ptr())

    def _freeze_refs(self) -> None:
        """The checks of :meth:`valid` as parallel tuples (checked with C-level ``map``)."""
        self._owners = tuple(o for o, _, _ in self.refs)
        self._keys = tuple(k for _, k, _ in self.refs)
        self._tensors = tuple(t for _, _, t in self.refs)
        # Parameters keep their identity when ``.to()`` moves their data (``param.data = …``)
        self._params = tuple(t for t in self._tensors if isinstance(t, nn.Parameter))
        self._ptrs = tuple(t.data_ptr() for t in self._params)
        self._vtensors = tuple(t for t, _ in self.versions)
        self._vnums = tuple(v for _, v in self.versions)

    def _own(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a, dtype=self.np_dtype)
        self.owned.append(a)
        return int(a.ctypes.data)

    def _emit(self, node: fx.Node, row: list[int], label: str) -> None:
        row = row + [0] * (K.WIDTH - len(row))
        self.rows.append(row)
        self._step_of[node] = len(self.rows) - 1
        self.summary.append(label)
        if not self.segments or self.segments[-1][0] != "kernels":
            self.segments.append(("kernels", [len(self.rows) - 1, len(self.rows)]))
        else:
            self.segments[-1][1][1] = len(self.rows)

    def _weighted(self, m: Any) -> list[int]:
        """Fields 5-16 of a Linear/Conv step: mode, addresses, colbits, sizes (field 29, the
        segments per row, comes from :meth:`_nseg`)."""
        if isinstance(m, SPARSE_LAYERS):
            mode = m.mode
            return [mode, self._ref(m, "seg_ptr"), self._ref(m, "entries"), m.colbits,
                    self._ref(m, "codebook") if mode == 0 else 0,
                    self._ref(m, "values") if mode == 1 else 0,
                    0, self._ref(m, "bias") if m.bias is not None else 0,
                    m.rows, m.cols, int(m.entries.numel()), int(m.codebook.numel())]
        w = m.weight
        rows = w.shape[0]
        return [2, 0, 0, 0, 0, self._ref(m, "weight"), 0,
                self._ref(m, "bias") if m.bias is not None else 0, rows, w[0].numel(), 0, 0]

    @staticmethod
    def _nseg(m: Any) -> int:
        return m.nseg if isinstance(m, SPARSE_LAYERS) else 1

    def _fold_bn(self, step: int, bn: Any) -> None:
        """Fold an eval BatchNorm into step ``step``'s epilogue (scale, shift)."""
        scale, shift = self._bn_affine(bn)
        row = self.rows[step]
        bias: Any = 0.0
        if row[12]:
            t = next(t for _, _, t in self.refs if t.data_ptr() == row[12])
            bias = t.detach().numpy().astype(np.float64)
        row[11] = self._own(scale)
        row[12] = self._own(bias * scale + shift)
        self.summary[step] += "+bn"

    def _bn_affine(self, bn: Any) -> tuple[np.ndarray, np.ndarray]:
        if bn.running_mean is None or bn.running_var is None:
            raise _Unsupported("BatchNorm without running statistics")
        tensors = [bn.running_mean, bn.running_var]
        g = bn.weight.detach().double().numpy() if bn.weight is not None else 1.0
        b = bn.bias.detach().double().numpy() if bn.bias is not None else 0.0
        if bn.weight is not None:
            tensors += [bn.weight, bn.bias]
        for t in tensors:
            if t.device.type != "cpu":
                raise _Unsupported("BatchNorm off the CPU")
            self.versions.append((t, t._version))
        inv = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
        scale = g * inv
        shift = b - bn.running_mean.double().numpy() * scale
        return np.broadcast_to(scale, bn.running_mean.shape), np.broadcast_to(shift, bn.running_mean.shape)

    def _fuse_act(self, node: fx.Node, src: fx.Node, act: str) -> bool:
        """Fuse activation ``node`` into the step producing ``src`` if nothing else reads it."""
        step = self._step_of.get(src)
        if step is None or len(src.users) != 1 or self.rows[step][0] not in _FUSABLE:
            return False
        if self.rows[step][1] != 0:
            return False
        self.rows[step][1] = K.ACTS[act]
        self.summary[step] += f"+{act}"
        self._region[node] = self._region[src]
        self._step_of[node] = step
        return True

    def _compile(self) -> None:
        g = self.gm.graph
        modules = dict(self.gm.named_modules())
        for node in g.nodes:
            if node.op == "placeholder":
                if self._region:
                    raise _Unsupported("more than one input")
                off = self._alloc(self.in_features)
                self._region[node] = off
                self._emit(node, [K.OP_LOAD, 0, 0, off, *[0] * 13, self.in_features], "load")
                continue
            if node.op == "output":
                out = node.args[0]
                if not isinstance(out, fx.Node) or out not in self._region:
                    raise _Unsupported("output is not one tensor")
                self.out_node = out
                self.out_shape: tuple[int, ...] = self._shape(out) or ()
                self.n_out = int(np.prod(self.out_shape)) if self.out_shape else 1
                self._emit(node, [K.OP_STORE, 0, self._region[out], 0, *[0] * 13, self.n_out],
                           "store")
                continue
            shape = self._shape(node)
            if shape is None:
                continue  # sizes and other Python values: used only as arguments
            try:
                self._node(node, shape, modules)
            except _Unsupported as exc:
                self._fallback(node, shape, str(exc), modules)

    def _in(self, node: fx.Node, i: int = 0) -> fx.Node:
        a = node.args[i] if len(node.args) > i else None
        if not isinstance(a, fx.Node) or a not in self._region:
            raise _Unsupported("input not a planned tensor")
        return a

    def _node(self, node: fx.Node, shape: tuple[int, ...], modules: dict[str, nn.Module]) -> None:
        n_out = int(np.prod(shape)) if shape else 1
        if node.op == "call_module":
            m: Any = modules[str(node.target)]
            src = self._in(node)
            ishape = self._shape(src) or ()
            if not node.args or len(node.args) != 1 or node.kwargs:
                raise _Unsupported("extra arguments")
            if isinstance(m, (SparseLinear, nn.Linear)) and type(m) in (SparseLinear, nn.Linear):
                if len(ishape) != 1:
                    raise _Unsupported(f"Linear on a {len(ishape) + 1}-d input")
                dst = self._alloc(n_out)
                self._region[node] = dst
                row = [K.OP_LINEAR, 0, self._region[src], dst, 0, *self._weighted(m)]
                self._emit(node, row + [0] * (29 - len(row)) + [self._nseg(m)],
                           f"{node.target}:linear")
                return
            if isinstance(m, SparseConv2d) or (type(m) is nn.Conv2d and SparseConv2d.supports(m)):
                c, h, w = ishape
                geo: Any = (m.kernel_size, m.stride, m.padding, m.dilation)
                (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geo
                src_off = self._pad(node, self._region[src], c, h, w, ph, pw, 0)
                dst = self._alloc(n_out)
                self._region[node] = dst
                o, oh, ow = shape
                self._emit(node, [K.OP_CONV, 0, src_off, dst, 0, *self._weighted(m),
                                  c, h + 2 * ph, w + 2 * pw, oh, ow, kh, kw, sh, sw, dh, dw, 0,
                                  self._nseg(m)],
                           f"{node.target}:conv")
                return
            if type(m) in _ACT_MODULES or type(m) is nn.GELU:
                act = _ACT_MODULES.get(type(m)) or ("gelu" if m.approximate == "none" else "gelu_tanh")
                self._act(node, src, act, n_out)
                return
            if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
                step = self._step_of.get(src)
                if (step is not None and len(src.users) == 1 and self.rows[step][0] in (K.OP_LINEAR, K.OP_CONV)
                        and self.rows[step][1] == 0 and not self.rows[step][11]):
                    self._fold_bn(step, m)
                    self._region[node] = self._region[src]
                    self._step_of[node] = step
                    return
                scale, shift = self._bn_affine(m)
                c = shape[0]
                dst = self._alloc(n_out)
                self._region[node] = dst
                self._emit(node, [K.OP_AFFINE, 0, self._region[src], dst, 0, 0, 0, 0, 0, 0, 0,
                                  self._own(scale), self._own(shift), 0, 0, 0, 0, c, n_out // c],
                           f"{node.target}:bn")
                return
            if type(m) in (nn.MaxPool2d, nn.AvgPool2d):
                self._pool(node, src, ishape, shape, m)
                return
            if type(m) is nn.AdaptiveAvgPool2d:
                c, h, w = ishape
                dst = self._alloc(n_out)
                self._region[node] = dst
                self._emit(node, [K.OP_ADAPTIVE_AVG, 0, self._region[src], dst, 0, *[0] * 12,
                                  c, h, w, shape[1], shape[2]], f"{node.target}:adaptive_avg")
                return
            if type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
                self._region[node] = self._region[src]
                return
            if type(m) in _ALIAS_MODULES:
                self._region[node] = self._region[src]
                return
            raise _Unsupported(type(m).__name__)
        if node.op == "call_function":
            fn = node.target
            if fn in (operator.add, torch.add) and len(node.args) == 2 and not node.kwargs:
                a, b = self._in(node, 0), self._in(node, 1)
                if self._shape(a) != shape or self._shape(b) != shape:
                    raise _Unsupported("broadcasting add")
                dst = self._alloc(n_out)
                self._region[node] = dst
                self._emit(node, [K.OP_ADD, 0, self._region[a], dst, self._region[b],
                                  *[0] * 12, n_out], "add")
                return
            if fn in _ACT_FUNCS and len(node.args) == 1 and not node.kwargs:
                self._act(node, self._in(node), _ACT_FUNCS[fn], n_out)
                return
            if fn is F.gelu and len(node.args) == 1:
                approx = node.kwargs.get("approximate", "none")
                self._act(node, self._in(node), "gelu" if approx == "none" else "gelu_tanh", n_out)
                return
            if fn is torch.flatten:
                src = self._in(node)
                if len(shape) == 1 and self._shape(src) is not None:
                    self._region[node] = self._region[src]
                    return
            raise _Unsupported(getattr(fn, "__name__", str(fn)))
        if node.op == "call_method":
            src = self._in(node)
            if node.target in ("flatten", "view", "reshape") and len(shape) == 1:
                self._region[node] = self._region[src]
                return
            if node.target in ("relu", "tanh", "sigmoid") and len(node.args) == 1:
                self._act(node, src, str(node.target), n_out)
                return
            raise _Unsupported(f".{node.target}()")
        raise _Unsupported(node.op)

    def _act(self, node: fx.Node, src: fx.Node, act: str, n_out: int) -> None:
        if self._fuse_act(node, src, act):
            return
        dst = self._alloc(n_out)
        self._region[node] = dst
        self._emit(node, [K.OP_ACT, K.ACTS[act], self._region[src], dst, 0, *[0] * 12, n_out], act)

    def _pad(self, node: fx.Node, src: int, c: int, h: int, w: int, ph: int, pw: int, neg: int) -> int:
        if not ph and not pw:
            return src
        dst = self._alloc(c * (h + 2 * ph) * (w + 2 * pw))
        self._emit(node, [K.OP_PAD, 0, src, dst, 0, neg, *[0] * 11, c, h, w, 0, 0, ph, pw], "pad")
        return dst

    def _pool(self, node: fx.Node, src: fx.Node, ishape: tuple[int, ...], shape: tuple[int, ...],
              m: Any) -> None:
        def pair(v: Any) -> tuple[int, int]:
            return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))

        (kh, kw), (sh, sw), (ph, pw) = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
        is_max = isinstance(m, nn.MaxPool2d)
        if m.ceil_mode or (is_max and (pair(m.dilation) != (1, 1) or m.return_indices)):
            raise _Unsupported(f"{type(m).__name__} options")
        if not is_max and ((not m.count_include_pad and (ph or pw)) or m.divisor_override):
            raise _Unsupported("AvgPool2d options")
        c, h, w = ishape
        src_off = self._pad(node, self._region[src], c, h, w, ph, pw, int(is_max))
        dst = self._alloc(int(np.prod(shape)))
        self._region[node] = dst
        self._emit(node, [K.OP_POOL, 0, src_off, dst, 0, int(is_max), *[0] * 11, c, h + 2 * ph,
                          w + 2 * pw, shape[1], shape[2], kh, kw, sh, sw, 0, 0, kh * kw],
                   f"{node.target}:{'max' if is_max else 'avg'}pool")

    def _fallback(self, node: fx.Node, shape: tuple[int, ...], why: str, modules: dict) -> None:
        for a in node.all_input_nodes:
            if a not in self._region:
                raise _Unsupported(f"{node.name} needs a value the plan does not keep ({why})")
        dst = self._alloc(int(np.prod(shape)) if shape else 1)
        self._region[node] = dst
        self.segments.append(("torch", node))
        what = type(modules[str(node.target)]).__name__ if node.op == "call_module" else str(node.target)
        self.fallback.append(f"{node.name} ({what}: {why})")
        self.summary.append(f"{node.name}:torch")

    # ------------------------------------------------------------------ running
    def arena(self, b: int) -> np.ndarray:
        a = self.arenas.get(b)
        if a is None:
            if len(self.arenas) >= 4:
                self.arenas.pop(next(iter(self.arenas)))
            a = self.arenas[b] = np.empty(max(1, self.size) * b, dtype=self.np_dtype)
        return a

    def valid(self) -> bool:
        """Whether every tensor the plan addresses is still the module's, at the same address
        (``.to()``/``.double()`` replace buffers and move parameters' data), and folded
        BatchNorm tensors are unchanged (their version counters)."""
        return (
            all(map(operator.is_, map(dict.get, self._owners, self._keys), self._tensors))
            and (not self._ptrs or tuple(map(_DATA_PTR, self._params)) == self._ptrs)
            and (not self._vnums or tuple(map(_VERSION, self._vtensors)) == self._vnums)
        )

    def run(self, x: torch.Tensor, nt: int) -> torch.Tensor:
        """Outputs for ``x`` (CPU, the plan's dtype and per-sample shape) on ``nt`` threads."""
        b = x.shape[0]
        if not x.is_contiguous():
            x = x.contiguous()
        out = torch.from_numpy(np.empty((b, *self.out_shape), dtype=self.np_dtype))
        locked = self.lock.acquire(False)
        arena = self.arena(b) if locked else np.empty(max(1, self.size) * b, dtype=self.np_dtype)
        old = numba.get_num_threads() if nt > 1 else 0
        try:
            if old:
                numba.set_num_threads(nt)
            if self.single:
                K.run_plan(self.table, self.lo, self.hi, x.data_ptr(), out.data_ptr(), arena, b, nt,
                           _U16, _I32)
            else:
                self._run_segments(x, out, arena, b, nt)
        finally:
            if old:
                numba.set_num_threads(old)
            if locked:
                self.lock.release()
        return out

    def _run_segments(self, x: torch.Tensor, out: torch.Tensor, arena: np.ndarray, b: int,
                      nt: int) -> None:
        for kind, seg in self.segments:
            if kind == "kernels":
                K.run_plan(self.table, seg[0], seg[1], x.data_ptr(), out.data_ptr(), arena, b, nt,
                           _U16, _I32)
                continue
            node: fx.Node = seg
            args = fx.node.map_arg(node.args, lambda n: self._tensor(n, arena, b))
            kwargs = fx.node.map_arg(node.kwargs, lambda n: self._tensor(n, arena, b))
            if node.op == "call_module":
                res = self.gm.get_submodule(str(node.target))(*args, **kwargs)
            elif node.op == "call_function":
                res = node.target(*args, **kwargs)  # type: ignore[operator]
            else:
                self_, *rest = args
                res = getattr(self_, str(node.target))(*rest, **kwargs)
            n = int(np.prod(self._shape(node) or (1,)))
            off = self._region[node]
            arena[off * b:(off + n) * b].reshape(n, b)[:] = res.detach().reshape(b, n).numpy().T

    def _tensor(self, node: fx.Node, arena: np.ndarray, b: int) -> torch.Tensor:
        shape = self._shape(node) or ()
        n = int(np.prod(shape)) if shape else 1
        off = self._region[node]
        a = arena[off * b:(off + n) * b].reshape(n, b).T.copy()
        return torch.from_numpy(a).reshape(b, *shape)

    def finish(self) -> None:
        self.table = np.ascontiguousarray(np.array(self.rows, dtype=np.int64).reshape(-1, K.WIDTH))
        self.single = len(self.segments) == 1
        self.lo: int = self.segments[0][1][0] if self.single else 0
        self.hi: int = self.segments[0][1][1] if self.single else 0
        self._freeze_refs()


_EXACT_MAX = 64  # input shapes remembered by the fast path
_WARM_CALLS = 3  # calls per batch size when a plan is prepared
_U16 = np.zeros(0, dtype=np.uint16)
_I32 = np.zeros(0, dtype=np.int32)
_DATA_PTR = torch.Tensor.data_ptr
_VERSION = operator.attrgetter("_version")


class Planned:
    """The ``forward`` of a model run by compiled plans (one per input shape and dtype).

    Installed as the model's instance attribute ``forward`` by :func:`attach_plan`; the
    model stays an ordinary module (children, buffers, ``state_dict``, ``.to()``...).
    """

    def __init__(self, model: nn.Module, threads: int | None = None,
                 input_shape: tuple[int, ...] | None = None):
        self.model = model
        self.threads = threads
        self.plans: dict[tuple[Any, ...], _Compiled | None] = {}
        # input shape (batch included) -> (dtype, plan): the fast path's one lookup
        self._exact: dict[torch.Size, tuple[torch.dtype, _Compiled]] = {}
        self.input_shapes: list[tuple[int, ...]] = []  # per-sample shapes prepared so far
        self.reason: str | None = None
        self.gm: fx.GraphModule | None = None
        self.flat_input = False
        self.traced = False
        self.params: list[torch.Tensor] = []
        if input_shape is not None:
            self.prepare(tuple(input_shape))

    def trace(self) -> None:
        """Trace the model once (torch.fx); a failure means per-module execution."""
        if self.traced:
            return
        self.traced = True
        model = self.model
        self.params = list(model.parameters())
        try:
            if isinstance(model, fx.GraphModule):
                self.gm = model
            else:
                self.gm = fx.GraphModule(model, _Tracer().trace(model))
        except Exception as exc:  # noqa: BLE001 - anything fx cannot trace runs per module
            self.reason = f"not traceable by torch.fx ({type(exc).__name__}: {str(exc)[:100]})"
            return
        ph = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(ph) != 1:
            self.reason, self.gm = f"{len(ph)} inputs (the plan takes one)", None
            return
        users = list(ph[0].users)
        self.flat_input = len(users) == 1 and _is_flatten(users[0], self.gm)

    # ------------------------------------------------------------------ public
    def prepare(self, input_shape: tuple[int, ...], dtype: torch.dtype | None = None,
                warm: bool = True) -> _Compiled | None:
        """Build (and run once, loading the compiled kernels) the plan for one input shape."""
        self.trace()
        dtype = dtype or _model_dtype(self.model)
        key = self._key(input_shape, dtype)
        plan = self._build(key, input_shape, dtype)
        if plan is not None and tuple(input_shape) not in self.input_shapes:
            self.input_shapes.append(tuple(input_shape))
        if plan is not None and warm:
            # Through the model's own call path, a few times: the kernels are loaded, the
            # fast path knows the shape, and the first call after loading costs what later
            # calls cost (measured 12x without this, from cold Python and caches).
            with torch.no_grad():
                for b in (1, PARALLEL_MIN_BATCH) if self._threads(PARALLEL_MIN_BATCH) > 1 else (1,):
                    x = torch.zeros((b, *input_shape), dtype=dtype)
                    for _ in range(_WARM_CALLS):
                        if self.model.training:
                            plan.run(x, self._threads(b))
                        else:
                            self.model(x)
        return plan

    def describe(self) -> str:
        """One paragraph: what runs compiled and what falls back, and why."""
        self.trace()
        if self.gm is None:
            return f"sparse runtime: per-module execution ({self.reason})"
        built = [p for p in self.plans.values() if p is not None]
        if not built:
            why = f" ({self.reason})" if self.reason else ""
            return f"sparse runtime: plan not built yet{why}"
        p = built[-1]
        steps = [s for s in p.summary if s not in ("load", "store", "pad")]
        text = f"sparse runtime: one compiled plan of {len(steps)} steps: {', '.join(steps)}"
        if p.fallback:
            text += f"; per-node fallback: {'; '.join(p.fallback)}"
        return text

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            x = args[0]
            # The fast path: a plan already built for this exact input shape and dtype.
            if type(x) is torch.Tensor and not self.model.training:
                hit = self._exact.get(x.shape)
                if (hit is not None and hit[0] is x.dtype and x.is_cpu and hit[1].valid()
                        and not (torch.is_grad_enabled() and (x.requires_grad or self._wants_grad()))):
                    return hit[1].run(x, self._threads(x.shape[0]))
            return self._slow(x)
        return type(self.model).forward(self.model, *args, **kwargs)

    def _slow(self, x: Any) -> Any:
        """Build (or rebuild) the plan for ``x`` where the plan applies, else run the module."""
        if not self.traced:
            self.trace()
        if (self.gm is not None and isinstance(x, torch.Tensor) and x.dim() >= 2
                and x.device.type == "cpu" and not self.model.training
                and not (torch.is_grad_enabled() and (x.requires_grad or self._wants_grad()))):
            key = self._key(tuple(x.shape[1:]), x.dtype)
            plan: Any = self.plans.get(key, False)
            if plan is not None and (plan is False or not plan.valid()):
                plan = self._build(key, tuple(x.shape[1:]), x.dtype)
            if plan is not None:
                if len(self._exact) < _EXACT_MAX:
                    self._exact[x.shape] = (x.dtype, plan)
                return plan.run(x, self._threads(x.shape[0]))
        return type(self.model).forward(self.model, x)

    # ------------------------------------------------------------------ internals
    def _threads(self, b: int) -> int:
        if b < PARALLEL_MIN_BATCH:
            return 1
        n = self.threads if self.threads is not None else default_threads()
        return max(1, min(int(n), _numba_threads()))

    def _wants_grad(self) -> bool:
        return any(p.requires_grad for p in self.params)

    def _key(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[Any, ...]:
        if self.flat_input:
            shape = (int(np.prod(shape)),)
        return (*shape, dtype)

    def _build(self, key: tuple[Any, ...], shape: tuple[int, ...], dtype: torch.dtype) -> _Compiled | None:
        if dtype not in (torch.float32, torch.float64) or self.gm is None:
            self.plans[key] = None
            return None
        if self.flat_input:
            shape = (int(np.prod(shape)),)
        self._exact.clear()  # re-filled by the next calls
        try:
            plan: _Compiled | None = _Compiled(self.gm, shape, dtype)
            plan.finish()  # type: ignore[union-attr]
        except (_Unsupported, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            root: BaseException = exc
            while root.__cause__ is not None:  # ShapeProp wraps the module's own error
                root = root.__cause__
            why = " ".join(str(root).split())[:160]  # one line
            self.reason = f"no plan for input {shape} {dtype} ({why})"
            plan = None
        self.plans[key] = plan
        return plan

    def __deepcopy__(self, memo: dict) -> Planned:
        new_model = memo.get(id(self.model), self.model)
        return Planned(new_model, self.threads)

    def __getstate__(self) -> dict:
        return {"model": self.model, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model"], state["threads"])  # type: ignore[misc]


def _is_flatten(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        return type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        return tuple(node.args[1:2]) == (1,) and len(node.args) <= 2 and not node.kwargs
    return False


def _model_dtype(model: nn.Module) -> torch.dtype:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def attach_plan(model: nn.Module, threads: int | None = None,
                input_shape: tuple[int, ...] | None = None) -> Planned:
    """Run ``model`` through compiled plans from now on; returns the :class:`Planned`.

    ``input_shape`` (without the batch) builds and warms the plan now; otherwise the first
    call of each new input shape builds it. ``threads``: threads for batches ≥ 16
    (default: ``torch.get_num_threads()``).
    """
    planned = Planned(model, threads, None)
    planned.trace()
    model.forward = planned  # type: ignore[method-assign]
    if input_shape is not None:
        planned.prepare(tuple(input_shape))
    return planned


def plan_of(model: nn.Module) -> Planned | None:
    """The model's :class:`Planned` forward, if it has one."""
    fwd = model.__dict__.get("forward")
    return fwd if isinstance(fwd, Planned) else None


def detach_plan(model: nn.Module) -> nn.Module:
    """Back to per-module execution (the module's own ``forward``)."""
    model.__dict__.pop("forward", None)
    return model


def guess_input_shape(model: nn.Module, metadata: dict[str, Any] | None = None) -> tuple[int, ...] | None:
    """The per-sample input shape, where the file tells it: ``metadata["input_shape"]``, a
    registry architecture's sizes, or the registered data set the file records
    (``metadata["dataset"]``, :data:`sparsenet.data.INPUT_SHAPES`); None when unknown (the
    plan is then built on the first call).
    """
    meta = metadata or {}
    shape = meta.get("input_shape")
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, int) and 0 < s < 1 << 16 for s in shape):
        return tuple(shape)
    arch = getattr(model, "arch", None)
    name, kw = (arch.get("name"), arch.get("kwargs") or {}) if isinstance(arch, dict) else (None, {})
    try:
        if name == "lenet300":
            return (int(kw.get("in_features", 784)),)
        if name == "lenet5":
            side = int(kw.get("input_size", 28))
            return (int(kw.get("in_channels", 1)), side, side)
    except (TypeError, ValueError, AttributeError):
        return None
    dataset = meta.get("dataset")
    return INPUT_SHAPES.get(dataset) if isinstance(dataset, str) else None
