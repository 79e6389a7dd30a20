"""S3 transfers for the launcher: upload what changed, download a prefix. boto3 does the transfers."""

from __future__ import annotations

import re
from pathlib import Path

from mmsent.files import sha256_of

_S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")
# S3's bucket naming rules: 3-63 characters, lower-case letters, digits, dots and hyphens.
BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CHECKSUM_KEY = "sha256"  # object metadata that records the uploaded file's checksum


class S3UriError(ValueError):
    pass


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI.match(uri)
    if not match or not BUCKET_NAME.match(match.group(1)):
        raise S3UriError(f"not an s3://bucket/prefix URI with a valid bucket name: {uri!r}")
    return match.group(1), match.group(2)


def upload_file(s3, path: Path, bucket: str, key: str) -> bool:
    """Upload unless an object with the same size and checksum is already there; True if uploaded."""
    path = Path(path)
    checksum = sha256_of(path)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] == path.stat().st_size and head.get("Metadata", {}).get(CHECKSUM_KEY) == checksum:
            return False
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {CHECKSUM_KEY: checksum}})
    return True


def upload_folder(s3, folder: Path, bucket: str, prefix: str, files: list[Path] | None = None) -> tuple[int, int]:
    """Upload `files` (default: every file under `folder`) keyed by their path relative to it.
    Returns (uploaded, skipped as unchanged)."""
    folder = Path(folder)
    uploaded = skipped = 0
    for path in sorted(files if files is not None else (p for p in folder.rglob("*") if p.is_file())):
        key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        if upload_file(s3, path, bucket, key):
            uploaded += 1
        else:
            skipped += 1
    return uploaded, skipped


def download_prefix(s3, bucket: str, prefix: str, destination: Path) -> int:
    """Download every object under the prefix, keeping the paths below it; the number of files."""
    destination = Path(destination).resolve()
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :].lstrip("/")
            if not relative or relative.endswith("/"):
                continue
            target = (destination / relative).resolve()
            if destination not in target.parents:
                raise S3UriError(f"refusing to write {item['Key']!r} outside {destination}")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            count += 1
    return count
