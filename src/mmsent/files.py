"""Safe file writes and checksums: a reader sees the old file or the whole new one, never half."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from mmsent.errors import MmsentError


class LockHeld(MmsentError, RuntimeError):
    """Another process holds the lock; `holder` says which ("process PID on HOST")."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an flock on `path` (created if absent) for the block, writing this process's PID and host
    into it; LockHeld naming the holder if another process has it. The kernel releases it when the
    process dies, however it dies, so a lock is never left stale."""
    with Path(path).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise LockHeld(handle.read().strip() or "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield


def prove_writable(folder: Path) -> None:
    """Create and remove a temporary file in `folder`: OSError (missing, not a folder, read-only, full) where
    nothing can be written there, before the work whose result would be written there."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def write_json_atomic(path: Path, value) -> None:
    write_atomic(Path(path), lambda p: Path(p).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8"))


def write_atomic(path: Path, write) -> None:
    """`write(temporary_path)`, then rename it over `path`: readers see the old file or the whole new one."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would make the renamed file private
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_torch_atomic(path: Path, obj) -> None:
    """torch.save(obj) to `path` atomically, serialised in memory first and written by Python, so a failed
    write is the OSError that says why (ENOSPC "No space left on device", EFBIG "File too large"), not
    torch's own "enforce fail at inline_container.cc ... unexpected pos". Costs the file's size in memory."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, lambda temporary: Path(temporary).write_bytes(buffer.getbuffer()))


def sha256_of(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
