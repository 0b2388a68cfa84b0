"""The sparse runtime: compiled kernels over the compact stored form, and whole-model plans.

``sparsenet.load(path, runtime="sparse")`` builds :class:`SparseLinear` /
:class:`SparseConv2d` layers whose buffers hold codebook indices plus column deltas
(:mod:`.compact`), then :func:`attach_plan` compiles the model's graph into one table of
numba kernel steps (:mod:`.plan`, :mod:`.kernels`) run without per-module dispatch.
"""

from .compact import CompactWeight, compact_from_coo, compact_from_dense, decode_dense
from .layers import SPARSE_LAYERS, SparseConv2d, SparseLinear
from .memory import weight_bytes
from .plan import PARALLEL_MIN_BATCH, Planned, attach_plan, default_threads, detach_plan, plan_of

__all__ = [
    "CompactWeight",
    "compact_from_coo",
    "compact_from_dense",
    "decode_dense",
    "SPARSE_LAYERS",
    "SparseConv2d",
    "SparseLinear",
    "PARALLEL_MIN_BATCH",
    "Planned",
    "attach_plan",
    "default_threads",
    "detach_plan",
    "plan_of",
    "weight_bytes",
]
