"""A run's output folders: made and proven writable before any training, and held by one run at a time.

Two runs given the same --run-name (or --checkpoint-dir, or --model-dir) would otherwise both train
to the end, one replacing the other's model and pruning its checkpoints. Each held folder gets a
lock beside it (`.NAME.lock`, not inside: the model dir is what SageMaker packs as model.tar.gz).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from mmsent.files import LockHeld, exclusive_lock, prove_writable
from mmsent.errors import MmsentError


class RunFolderError(MmsentError, RuntimeError):
    """An output folder cannot be written, or another run holds it; the message names it."""


def hold_run_folders(folders: dict[str, Path], held: tuple[str, ...]) -> contextlib.ExitStack:
    """Create each folder (by what it holds: {"model dir": PATH, ...}) and prove it writable; lock
    those named in `held`. The returned stack releases the locks when closed, and where the run it
    guarded failed, removes the folders it created that are still empty (a refused `train` leaves no
    empty runs/NAME/ behind)."""
    created: list[Path] = []  # the topmost folder each mkdir made, in the order made
    for what, folder in folders.items():
        try:
            missing = [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            created += missing[-1:]
            prove_writable(folder)
        except OSError as error:
            _remove_if_empty(created)
            raise RunFolderError(f"{folder}: cannot hold the {what} ({error.strerror or error})") from None
    stack = contextlib.ExitStack()

    def remove_on_failure(exc_type, _exc, _tb) -> bool:
        if exc_type is not None:
            _remove_if_empty(created)
        return False  # the failure goes on

    stack.push(remove_on_failure)  # pushed first: runs last, after the locks are released
    try:
        for what in held:
            folder = folders[what].resolve()
            try:
                stack.enter_context(exclusive_lock(folder.parent / f".{folder.name}.lock"))
            except LockHeld as other:
                raise RunFolderError(f"{folder}: the {what} is in use by another run ({other.holder}); wait for it, "
                                     "or give this run another --run-name") from None  # fmt: skip
    except BaseException:
        stack.close()
        raise
    return stack


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder that holds nothing but empty folders and run locks (`.NAME.lock`)."""
    for folder in reversed(folders):
        entries = list(folder.rglob("*")) if folder.is_dir() else []
        if all(p.is_dir() or (p.name.startswith(".") and p.name.endswith(".lock")) for p in entries):
            shutil.rmtree(folder, ignore_errors=True)
