"""Integrity of a ``.pt`` checkpoint's zip container, checked before ``torch.load``.

``torch.load`` does not verify the CRC32 that ``torch.save`` writes for every member of
the zip archive, so a flipped byte inside a weight tensor loads silently as another
model. :func:`verify_checkpoint_zip` reads the central directory and every member once,
in 1 MiB chunks, and raises :class:`~sparsenet.errors.CheckpointError` unless

* the file is a zip archive of at most :data:`MAX_MEMBERS` members;
* every member is stored (torch never compresses), so its declared size equals its
  stored size and fits inside the file: nothing decodes to more bytes than the file has
  (the allocation cap: a checkpoint's tensors take at most its own size in memory);
* every member's CRC32 matches its bytes.

Memory use is one chunk, whatever the file says.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

from .errors import CheckpointError

__all__ = ["MAX_MEMBERS", "verify_checkpoint_zip"]

MAX_MEMBERS = 1 << 16
_CHUNK = 1 << 20


def verify_checkpoint_zip(path: str | os.PathLike[str]) -> None:
    """Raise CheckpointError if ``path`` is not an intact torch zip checkpoint."""
    p = Path(path)
    size = p.stat().st_size
    try:
        with zipfile.ZipFile(p) as z:
            members = z.infolist()
            if not members or len(members) > MAX_MEMBERS:
                raise CheckpointError(f"{p}: not a sparsenet checkpoint ({len(members)} members)")
            total = 0
            for m in members:
                if m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size:
                    raise CheckpointError(
                        f"{p}: not a sparsenet checkpoint (member {m.filename!r} is compressed)"
                    )
                total += m.file_size
                if total > size:
                    raise CheckpointError(
                        f"{p}: corrupt checkpoint (members declare {total:,} bytes, the file "
                        f"has {size:,})"
                    )
                crc = 0
                with z.open(m) as fh:  # zipfile checks the local header against the directory
                    while chunk := fh.read(_CHUNK):
                        crc = zlib.crc32(chunk, crc)
                if crc != m.CRC:
                    raise CheckpointError(f"{p}: corrupt checkpoint ({m.filename!r} CRC32 mismatch)")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
            NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise CheckpointError(
            f"{p}: not a sparsenet checkpoint (bad zip: {exc}); sparsenet never loads pickled code"
        ) from None
