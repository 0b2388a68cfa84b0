"""Start 2 gloo ranks on loopback with ``torch.distributed.run``, bounded in time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds; subprocess.run kills the launcher (and so its ranks) after this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    """This checkout first on the path, one thread per rank, replica checks on."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "SPARSENET_DEBUG_DISTRIBUTED": "1", **extra}


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc-per-node N ... ARGS``; asserts exit 0."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if proc.returncode != 0:  # the ranks' own errors come first, the launcher's summary last
        ranks = [ln for ln in proc.stderr.splitlines() if ln.startswith("[rank")]
        raise AssertionError("\n".join(ranks[-60:]) + "\n" + proc.stderr[-1500:])
    return proc
