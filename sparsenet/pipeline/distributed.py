"""The pipeline under ``torchrun``: every rank runs every stage, only rank 0 writes the run.

Every rank must execute the same stages in the same order, because the stages' training
(``fit`` with DistributedDataParallel), OBD's Hessian and the sensitivity scans are
collective. So each rank runs :func:`~sparsenet.pipeline.compress` in full, but ranks other
than 0 point it at a private scratch copy of the run directory (deleted afterwards), run
quietly and skip the report. Rank 0 alone writes the real run directory, manifest,
checkpoints, report and ``.snn``; its report is broadcast so every rank returns the same.

The scratch copy is taken before rank 0 touches the run directory (a barrier orders them),
so ``--resume`` and the "run directory already holds a run" check decide the same way on
every rank. One process (no ``torchrun``) is untouched: the wrapper calls straight through.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .. import distributed as dist_

__all__ = ["rank_zero_writes"]

F = TypeVar("F", bound=Callable[..., Any])


def rank_zero_writes(fn: F) -> F:
    """Decorate ``compress(model, data, recipe, run_dir, out, ..., quiet, report)`` for torchrun.

    Returns ``fn`` unchanged in behaviour in one process.
    """
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not dist_.is_distributed():
            return fn(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = dict(bound.arguments)
        # rank 0 picks the (maybe temporary) run directory; the others mirror it.
        if a["run_dir"] is None and dist_.is_main():
            a["run_dir"] = tempfile.mkdtemp(prefix="sparsenet-run-")
        if dist_.is_main():
            dist_.barrier()  # wait until the other ranks have copied the run directory
            model, report = fn(**a)
            dist_.broadcast_object(report)
            return model, report
        with tempfile.TemporaryDirectory(prefix=f"sparsenet-rank{dist_.rank()}-") as tmp:
            scratch, real = Path(tmp) / "run", a["run_dir"]
            if real is not None and Path(real).is_dir():
                shutil.copytree(real, scratch)
            real_out = Path(a["out"]) if a["out"] is not None else None
            if real_out is None and real is not None:
                real_out = Path(real) / "model.snn"
            out = Path(tmp) / "out" / "model.snn"
            out.parent.mkdir()
            if real_out is not None and real_out.is_file():
                shutil.copy2(real_out, out)
            dist_.barrier()
            a.update(run_dir=os.fspath(scratch), out=os.fspath(out), quiet=True, report=False)
            model, _ = fn(**a)
            report = dist_.broadcast_object(None)
        return model, report

    return wrapper  # type: ignore[return-value]
