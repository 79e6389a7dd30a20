"""Safe file writes and checksums: a reader sees the old file or the whole new one, never half."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


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


def sha256_of(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
