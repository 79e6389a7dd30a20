"""`mmsent data download` against an HTTP server on 127.0.0.1 serving a MELD.Raw-shaped archive built from
the sample: nested per-split archives, range requests, a connection that breaks off, hostile archives."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mmsent.data.download import COMPLETE, DATA_FOLDER, LOCK, DownloadError, download_meld
from mmsent.files import exclusive_lock
from mmsent.data.layout import CLIP_FOLDERS, find_splits
from tests.cli import mmsent, mmsent_process


def _tar_gz(members: dict[str, bytes | tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def meld_raw_archive(sample: Path, extra: dict | None = None) -> bytes:
    """MELD.Raw.tar.gz's shape: MELD.Raw/ with the CSVs and train/dev/test.tar.gz of the clip folders."""
    members: dict = {}
    for split, clips in CLIP_FOLDERS.items():
        members[f"{DATA_FOLDER}/{split}_sent_emo.csv"] = (sample / split / f"{split}_sent_emo.csv").read_bytes()
        inner = {f"{clips}/{p.name}": p.read_bytes() for p in sorted((sample / split / clips).iterdir())}
        members[f"{DATA_FOLDER}/{split}.tar.gz"] = _tar_gz(inner)
    return _tar_gz(members | (extra or {}))


class ArchiveServer:
    """Serves `body` at /MELD.Raw.tar.gz with range requests; `break_after` bytes cut the first response short."""

    def __init__(self, body: bytes, break_after: int | None = None) -> None:
        self.body, self.break_after, self.requests = body, break_after, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.headers.get("Range"))
                start = int(re.match(r"bytes=(\d+)-", self.headers["Range"]).group(1)) if self.headers.get("Range") else 0
                if start >= len(server.body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                data = server.body[start:]
                if server.break_after is not None and len(server.requests) == 1:
                    data = data[: server.break_after]  # then the connection closes: fewer bytes than announced
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/MELD.Raw.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive(sample_dir) -> bytes:
    return meld_raw_archive(sample_dir)


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, **options) -> ArchiveServer:
        servers.append(ArchiveServer(body, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_download_extracts_into_the_layout_train_reads_and_a_second_run_does_nothing(archive, serve, tmp_path, sample_dir):
    server = serve(archive)
    sha = hashlib.sha256(archive).hexdigest()
    result = mmsent("data", "download", "--out", str(tmp_path), "--url", server.url, "--sha256", sha, "--workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    data = tmp_path / DATA_FOLDER
    splits = find_splits(data)
    assert list(splits) == ["train", "dev", "test"] and all(s.clip_dir == data / CLIP_FOLDERS[s.split] for s in splits.values())
    assert sorted(p.name for p in splits["train"].clip_dir.iterdir()) == sorted(
        p.name for p in (sample_dir / "train" / CLIP_FOLDERS["train"]).iterdir())  # fmt: skip
    checked = mmsent("data", "check", "--data-dir", str(data), "--workers", "1")
    assert checked.stdout in result.stdout  # data check's report (every clip decoded) ends the download
    assert sorted(p.name for p in tmp_path.iterdir()) == [COMPLETE, DATA_FOLDER]  # no archive, no staging left
    again = mmsent("data", "download", "--out", str(tmp_path), "--url", server.url, "--no-decode")
    assert again.returncode == 0 and "already downloaded" in again.stdout
    assert len(server.requests) == 1  # the second run asked the server nothing


def test_a_connection_that_breaks_off_is_resumed_with_a_range_request(archive, serve, tmp_path):
    server = serve(archive, break_after=len(archive) // 3)
    data = download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert server.requests == [None, f"bytes={len(archive) // 3}-"]
    assert (data / "train_sent_emo.csv").is_file()


def test_a_partial_file_left_by_an_earlier_run_is_resumed(archive, serve, tmp_path):
    (tmp_path / "MELD.Raw.tar.gz.part").write_bytes(archive[:1000])
    server = serve(archive)
    messages = []
    download_meld(tmp_path, server.url, say=messages.append, progress=False)
    assert server.requests == ["bytes=1000-"] and "resuming MELD.Raw.tar.gz.part at 1,000 bytes" in messages


def test_a_truncated_archive_is_refused_and_removed_and_nothing_passes_for_complete(archive, serve, tmp_path):
    server = serve(archive[: len(archive) // 2])  # the server announces the truncated length: the download "succeeds"
    with pytest.raises(DownloadError, match="not a whole archive.*removed: run again to download it afresh"):
        download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("member", [
    "../escaped.txt",
    "/etc/mmsent-absolute.txt",
    "symlink",
])  # fmt: skip
def test_a_hostile_member_is_refused_and_nothing_is_written_outside(sample_dir, serve, tmp_path, member):
    if member == "symlink":
        link = tarfile.TarInfo(f"{DATA_FOLDER}/link-out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        extra = {link.name: link}
    else:
        extra = {member: b"not from MELD"}
    server = serve(meld_raw_archive(sample_dir, extra))
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="refused to extract"):
        download_meld(out, server.url, say=lambda *a: None, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/etc/mmsent-absolute.txt").exists()
    assert list(out.iterdir()) == []  # no data folder, no marker, not even the archive


def test_an_archive_without_meld_layout_is_refused(serve, tmp_path):
    server = serve(_tar_gz({f"{DATA_FOLDER}/README.txt": b"no splits here"}))
    with pytest.raises(DownloadError, match="not MELD.Raw's layout"):
        download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert list(tmp_path.iterdir()) == []  # no data folder, no marker, no archive


def test_a_wrong_sha256_is_refused_before_extracting(archive, serve, tmp_path):
    server = serve(archive)
    result = mmsent("data", "download", "--out", str(tmp_path), "--url", server.url, "--sha256", "0" * 64)
    assert result.returncode == 2 and "SHA-256" in result.stderr and "the file was removed" in result.stderr
    assert list(tmp_path.iterdir()) == []
    bad = mmsent("data", "download", "--out", str(tmp_path), "--url", server.url, "--sha256", "xyz")
    assert bad.returncode == 2 and "64 hexadecimal digits" in bad.stderr


def test_too_little_disk_is_found_before_downloading(archive, serve, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 10, 10))
    server = serve(archive)
    with pytest.raises(DownloadError, match="GB free, .* GB needed"):
        download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert not (tmp_path / "MELD.Raw.tar.gz.part").exists()  # refused before a byte was written


def test_a_full_disk_stops_the_download_keeping_what_arrived_to_resume(archive, serve, tmp_path):
    # A file-size limit stands in for a full disk: the write fails with EFBIG mid-way.
    import resource

    server = serve(archive)
    limit = len(archive) // 2

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = mmsent_process("data", "download", "--out", str(tmp_path), "--url", server.url, "--no-decode", preexec_fn=limited)
    assert result.returncode == 2 and "File too large" in result.stderr and "run the command again to resume" in result.stderr
    kept = (tmp_path / "MELD.Raw.tar.gz.part").stat().st_size
    assert 0 < kept <= limit and not (tmp_path / DATA_FOLDER).exists() and not (tmp_path / COMPLETE).exists()
    resumed = mmsent("data", "download", "--out", str(tmp_path), "--url", server.url, "--no-decode")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert server.requests[-1] == f"bytes={kept}-" and (tmp_path / COMPLETE).is_file()


def test_a_folder_in_the_way_that_no_finished_download_made_is_left_alone(archive, serve, tmp_path):
    (tmp_path / DATA_FOLDER).mkdir()
    (tmp_path / DATA_FOLDER / "notes.txt").write_text("mine")
    server = serve(archive)
    with pytest.raises(DownloadError, match="exists but no finished download made it"):
        download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert (tmp_path / DATA_FOLDER / "notes.txt").read_text() == "mine" and server.requests == []


def test_a_second_download_into_the_same_folder_stops_naming_the_first(archive, serve, tmp_path):
    server = serve(archive)
    with exclusive_lock(tmp_path / LOCK):  # as a download running in another process holds it
        with pytest.raises(DownloadError, match="another download into it is running \\(process \\d+ on "):
            download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)
    assert server.requests == [] and not (tmp_path / "MELD.Raw.tar.gz.part").exists()
    download_meld(tmp_path, server.url, say=lambda *a: None, progress=False)  # once it is done, the folder is free
    assert sorted(p.name for p in tmp_path.iterdir()) == [COMPLETE, DATA_FOLDER]
