"""`mmsent data download`: MELD.Raw from its authors' address into the layout `mmsent train --data-dir` reads.

MELD.Raw.tar.gz (about 10 GB) holds `MELD.Raw/` with the three CSVs and one archive per split
(train.tar.gz: train_splits/, dev.tar.gz: dev_splits_complete/, test.tar.gz: output_repeated_splits_test/).
The download goes to `OUT/MELD.Raw.tar.gz.part`, resumed with an HTTP range request after an interruption
(within a run, a few times; or by running the command again), its size checked against the server's and
its SHA-256 where one is given. Both levels of archives are extracted with tarfile's `data` filter (no
absolute paths, no `..`, no links leaving the folder, no devices) into a staging folder, which becomes
`OUT/MELD.Raw` in one rename, and a marker beside it says the data is whole: a run stopped anywhere leaves
nothing a later run takes as complete, and a second run after a whole one does nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mmsent.data.layout import CLIP_FOLDERS, DatasetLayoutError, find_splits
from mmsent.errors import MmsentError
from mmsent.files import LockHeld, exclusive_lock

MELD_URL = "https://web.eecs.umich.edu/~mihalcea/downloads/MELD.Raw.tar.gz"  # the MELD authors' address
DATA_FOLDER = "MELD.Raw"
COMPLETE = ".mmsent-download.json"  # beside DATA_FOLDER once it is whole: what was downloaded, from where
LOCK = ".mmsent-download.lock"  # held while a download runs, removed when it ends
ATTEMPTS = 5  # requests per run: the first, then resumptions after a connection that broke off
CHUNK = 1 << 20
# Room needed beyond what is still to download: the archive's size again while its members are extracted,
# and the largest split archive once more while it is unpacked (deleted after).
EXTRACT_ROOM = 2.0


class DownloadError(MmsentError, RuntimeError):
    """The download or its extraction failed; the message says what, and what is kept to resume."""


class NoRoom(DownloadError):
    """The disk (or the file-size limit) ran out: the archive itself is sound and kept."""


def download_meld(out: Path, url: str = MELD_URL, sha256: str | None = None, say: Callable[..., None] = print,
                  progress: bool | None = None) -> Path:  # fmt: skip
    """The MELD.Raw folder under `out`, downloaded and extracted unless a whole one is there already. One
    download at a time into a folder: a second one started meanwhile stops at once, naming the first."""
    out = Path(out)
    marker = out / COMPLETE
    if marker.is_file() and (out / DATA_FOLDER).is_dir():
        say(f"{out / DATA_FOLDER}: already downloaded ({json.loads(marker.read_text()).get('url', 'unknown address')}); nothing to do")
        return out / DATA_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    try:
        with exclusive_lock(lock):
            try:
                return _download(out, url, sha256, say, progress)
            finally:
                lock.unlink(missing_ok=True)  # while held: a later run takes a new one
    except LockHeld as held:
        raise DownloadError(f"{out}: another download into it is running ({held.holder}); wait for it, or choose "
                            "another --out") from None  # fmt: skip


def _download(out: Path, url: str, sha256: str | None, say, progress: bool | None) -> Path:
    data, marker = out / DATA_FOLDER, out / COMPLETE
    if marker.is_file() and data.is_dir():  # the run that held the folder before this one finished it
        say(f"{data}: already downloaded; nothing to do")
        return data
    if data.exists():
        raise DownloadError(f"{data} exists but no finished download made it (no {COMPLETE}): move it away first")
    archive = out / (Path(url.split("?")[0]).name or "MELD.Raw.tar.gz")
    part = archive.with_name(archive.name + ".part")
    if not archive.is_file():
        _fetch(url, part, say, progress)
        _check_sha256(part, sha256)
        os.replace(part, archive)
    else:
        _check_sha256(archive, sha256)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=out))
    try:
        say(f"extracting {archive.name}")
        try:
            root = _extract(archive, staging)
        except NoRoom:
            raise
        except DownloadError as problem:  # a corrupt or hostile archive is not kept to be tried again
            archive.unlink()
            raise DownloadError(f"{problem}; {archive.name} was removed: run again to download it afresh") from None
        for inner in sorted(root.glob("*.tar.gz")):
            say(f"extracting {inner.name}")
            _extract(inner, root)
            inner.unlink()  # its members are out: the room goes back to the next one
        try:
            _check_layout(root)
        except DownloadError as problem:
            archive.unlink()
            raise DownloadError(f"{problem}; {archive.name} was removed, nothing was kept") from None
        os.replace(root, data)
        marker.write_text(json.dumps({"url": url, "archive_bytes": archive.stat().st_size, "sha256": sha256}, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink()
    say(f"MELD is in {data}: mmsent train --data-dir {data}")
    return data


def _fetch(url: str, part: Path, say, progress: bool | None) -> None:
    """Download `url` to `part`, appending to what an earlier attempt left there (an HTTP range request)."""
    from tqdm import tqdm

    total = None
    bar = None
    try:
        for attempt in range(ATTEMPTS):
            have = part.stat().st_size if part.exists() else 0
            request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            try:
                response = urllib.request.urlopen(request, timeout=60)
            except urllib.error.HTTPError as error:
                if error.code == 416 and have:  # nothing after what is there: it is all there (extraction checks it)
                    return
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            except (urllib.error.URLError, OSError) as error:
                if attempt + 1 < ATTEMPTS and have:
                    continue
                raise DownloadError(f"{url}: {getattr(error, 'reason', error)}; {have} bytes kept in {part}, "
                                    "run the command again to resume") from None  # fmt: skip
            with response:
                resumed = have and response.status == 206
                if have and not resumed:  # the server ignored the range: start again
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                if attempt == 0:
                    _check_room(part.parent, total, have)
                    if have:
                        say(f"resuming {part.name} at {have:,} bytes")
                if bar is None:
                    bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                               disable=None if progress is None else not progress)  # fmt: skip
                else:
                    bar.n = have
                try:
                    with part.open("ab" if resumed else "wb") as file:
                        while chunk := response.read(CHUNK):
                            file.write(chunk)
                            bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as error:  # IncompleteRead: the connection broke off
                    if getattr(error, "errno", None) in (27, 28):  # EFBIG, ENOSPC: no room to go on; what is there resumes later
                        raise NoRoom(f"{part}: {error.strerror}; free some space and run the command again to "
                                            "resume") from None  # fmt: skip
                    if attempt + 1 < ATTEMPTS:
                        continue
                    raise DownloadError(f"{url}: {type(error).__name__}; {part.stat().st_size} bytes kept in {part}, run the "
                                        "command again to resume") from None  # fmt: skip
            got = part.stat().st_size
            if total is None or got == total:
                return
            if got > total:
                part.unlink()
                raise DownloadError(f"{url}: {got} bytes arrived where the server announced {total}; the partial file was removed")
        raise DownloadError(f"{url}: the connection broke off {ATTEMPTS} times; {part.stat().st_size} bytes kept in {part}, "
                            "run the command again to resume")  # fmt: skip
    finally:
        if bar is not None:
            bar.close()


def _check_room(folder: Path, total: int | None, have: int) -> None:
    if total is None:
        return
    needed = int((total - have) + EXTRACT_ROOM * total)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NoRoom(f"{folder}: {free / 1e9:.1f} GB free, {needed / 1e9:.1f} GB needed (the {total / 1e9:.1f} GB "
                            "archive and its extraction); free some space or choose another --out")  # fmt: skip


def _check_sha256(path: Path, expected: str | None) -> None:
    if expected is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        path.unlink()
        raise DownloadError(f"{path.name}: SHA-256 {digest.hexdigest()}, not the {expected} expected; the file was removed")


def _safe_member(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """tarfile's `data` filter (no `..`, no links out of the folder, no devices, no odd permissions), and no
    absolute name either: the filter would strip its slash, but such a member has no place in MELD's archives."""
    if member.name.startswith(("/", os.sep)):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, path)


def _extract(archive: Path, into: Path) -> Path:
    """Extract `archive` safely into `into`; return the one folder it holds at its top, else `into`."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter=_safe_member)
    except tarfile.FilterError as error:
        raise DownloadError(f"{archive.name}: refused to extract {error.tarinfo.name!r} ({error}); nothing was kept") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, OSError) and error.errno in (27, 28):
            raise NoRoom(f"{archive.name}: {error.strerror} while extracting; free some space and run again") from None
        raise DownloadError(f"{archive.name}: not a whole archive ({type(error).__name__}: {error})") from None
    entries = [p for p in into.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def _check_layout(root: Path) -> None:
    """The folder holds what `mmsent train --data-dir` reads: each split's CSV and its clip folder."""
    try:
        splits = find_splits(root)
    except DatasetLayoutError:
        splits = {}
    missing = [f"{split} ({CLIP_FOLDERS[split]}/)" for split in CLIP_FOLDERS if split not in splits or splits[split].clip_dir is None]
    if missing:
        raise DownloadError(f"the archive lacks {', '.join(missing)}: not MELD.Raw's layout")
