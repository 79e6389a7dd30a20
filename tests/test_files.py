"""Atomic writes, the run lock (held by a real second process) and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from mmsent.files import LockHeld, exclusive_lock, sha256_of, write_atomic, write_json_atomic


def test_write_json_atomic_writes_the_whole_value(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"epoch": 3, "f1": [0.5, 0.6]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"epoch": 3, "f1": [0.5, 0.6]}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.pth"
    target.write_bytes(b"old weights")

    def crash_halfway(path):
        open(path, "wb").write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, crash_halfway)
    assert target.read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


def test_the_written_file_follows_the_umask_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "m.json", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644


def test_a_second_process_is_refused_the_lock_naming_the_holder_and_gets_it_once_released(tmp_path):
    lock = tmp_path / ".lock"
    other = textwrap.dedent(f"""
        from mmsent.files import LockHeld, exclusive_lock
        try:
            with exclusive_lock({str(lock)!r}):
                print("acquired")
        except LockHeld as held:
            print("held by", held.holder)
    """)
    with exclusive_lock(lock):
        refused = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True).stdout
        assert refused.strip().startswith(f"held by process {os.getpid()} on ")
        with pytest.raises(LockHeld):  # flock is per open file: even this process cannot take it twice
            with exclusive_lock(lock):
                pass
    assert subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True).stdout == "acquired\n"


def test_a_lock_dies_with_its_process(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from mmsent.files import exclusive_lock
        with exclusive_lock({str(lock)!r}):
            print("holding", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(LockHeld, match=f"process {holder.pid} on"):
            with exclusive_lock(lock):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(lock):  # killed, never released by hand: the kernel dropped it
        pass


def test_sha256_of_matches_hashlib(tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "clip.mp4").write_bytes(data)
    assert sha256_of(tmp_path / "clip.mp4") == hashlib.sha256(data).hexdigest()
