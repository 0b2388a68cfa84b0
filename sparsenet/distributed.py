"""``torch.distributed`` helpers: start-up from ``torchrun``'s environment, ranks, reductions.

Everything here is a no-op in a single process, so library code can call it unconditionally.
``torchrun --nproc-per-node 2 -m sparsenet ...`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``;
:func:`init_from_env` then joins the process group (gloo on CPU, NCCL with CUDA).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "init_from_env",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "check_replicas_equal",
    "debug_enabled",
    "broadcast_object",
    "finish",
    "wrap_ddp",
    "shard_bounds",
    "all_gather_rows",
    "map_rows",
    "all_reduce_dict",
]


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment variables.

    Returns True when running distributed (``WORLD_SIZE`` > 1). Safe to call repeatedly.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    # Tear the group down at exit (a gloo rank exiting with the group alive can abort);
    # :func:`finish` is the reliable way out.
    atexit.register(_shutdown)
    # One intra-op thread per rank by default: ranks already use the cores.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return dist.get_world_size() > 1


def _shutdown() -> None:
    """At interpreter exit: destroy the group if :func:`finish` did not (see init_from_env)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish(code: int = 0) -> NoReturn:
    """End a distributed process now with exit status ``code`` (``sys.exit`` in one process).

    With ``code == 0`` all ranks meet at a barrier and the group is destroyed; then the
    process leaves through ``os._exit`` after flushing stdout/stderr. Letting the
    interpreter tear down normally aborts a gloo rank now and then (~1 run in 10 on a loaded
    machine: "terminate called without an active exception", exit -6, after the group was
    destroyed), which torchrun reports as a failed run. Call it last in a torchrun script.
    """
    if not is_distributed():
        sys.exit(code)
    if code == 0:
        dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (identity in one process); returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def debug_enabled() -> bool:
    """``SPARSENET_DEBUG_DISTRIBUTED=1`` turns on cross-rank consistency assertions."""
    return os.environ.get("SPARSENET_DEBUG_DISTRIBUTED", "") not in ("", "0")


def check_replicas_equal(model: nn.Module, what: str = "model") -> None:
    """Assert every parameter and buffer (masks, codebooks, indices) is identical on all ranks.

    Compares each tensor's float64 sum and sum of squares across ranks; raises
    ``AssertionError`` naming the first tensor that differs.
    """
    if not is_distributed():
        return
    names: list[str] = []
    stats: list[torch.Tensor] = []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        v = t.detach().double().flatten().cpu()
        names.append(name)
        stats.append(
            torch.stack(
                [v.sum(), (v * v).sum(), torch.tensor(float(v.numel()), dtype=torch.float64)]
            )
        )
    local = torch.stack(stats) if stats else torch.zeros(0, 3, dtype=torch.float64)
    gathered = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(gathered, local)
    for r, other in enumerate(gathered):
        diff = (other != gathered[0]).any(dim=1)
        if bool(diff.any()):
            bad = names[int(diff.nonzero()[0])]
            raise AssertionError(f"{what}: tensor {bad!r} differs between rank 0 and rank {r}")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every rank (identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# Parametrisation kinds whose forward ignores the ``original`` tensor (it gets no gradient).
_IGNORE_ORIGINAL = {"codebook"}


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` for a distributed ``fit`` (else itself).

    A codebook layer (weight sharing) trains its ``centroids`` while the parametrisation's
    ``original`` weight gets no gradient, which plain DDP refuses, so models holding one use
    ``find_unused_parameters`` (one extra graph walk per step). Parametrisation buffers (masks, code indices) are fixed during
    training and identical on every rank (``check_replicas_equal`` asserts it), so they are
    not re-broadcast every step unless the model has other buffers (e.g. batch-norm
    statistics).
    """
    if not is_distributed():
        return model
    kinds = {getattr(m, "transform_kind", None) for m in model.modules()}
    other_buffers = any(".parametrizations." not in f".{n}" for n, _ in model.named_buffers())
    return nn.parallel.DistributedDataParallel(
        model,
        find_unused_parameters=bool(kinds & _IGNORE_ORIGINAL),
        forward_sync_buffers=other_buffers,
    )


# ---------------------------------------------------------------- data sharding
# Contiguous shards (rank r gets rows [r·N/W, (r+1)·N/W)): gathering them back in rank
# order restores the original row order, so a sharded map equals the unsharded one row by row.


def shard_bounds(n: int) -> tuple[int, int]:
    """This rank's contiguous share ``[lo, hi)`` of ``n`` rows (all of them in one process).

    Shares differ in size by at most one row; a rank's share is empty when ``n`` < world size.
    """
    w, r = world_size(), rank()
    return r * n // w, (r + 1) * n // w


def all_gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's ``local`` (rows of its :func:`shard_bounds` of ``n``) in rank order.

    ``local`` is (hi - lo, ...) on each rank; returns (n, ...) on every rank (``local`` itself in
    one process). Shares are padded to the largest one for ``all_gather`` and trimmed after.
    """
    if not is_distributed():
        return local
    w = world_size()
    sizes = [(r + 1) * n // w - r * n // w for r in range(w)]
    width = max(sizes)
    padded = local.new_zeros((width, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def map_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for a row-wise ``fn``, each rank computing its shard of rows, gathered on all ranks.

    ``fn`` maps (m, ...) to (m, ...) row by row (e.g. sparse coding). When ``x`` has fewer rows
    than there are ranks every rank computes all of them (nothing to gain from splitting).
    """
    n = len(x)
    if not is_distributed() or n < world_size():
        return fn(x)
    lo, hi = shard_bounds(n)
    return all_gather_rows(fn(x[lo:hi]), n)


def all_reduce_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum every tensor of ``tensors`` over ranks in place, in sorted key order; returns it.

    Every rank must hold the same keys with the same shapes (one collective per key).
    """
    if is_distributed():
        for key in sorted(tensors):
            dist.all_reduce(tensors[key], op=dist.ReduceOp.SUM)
    return tensors
