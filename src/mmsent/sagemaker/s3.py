"""S3 transfers for the launcher: upload what changed, download a prefix. boto3 does the transfers."""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from mmsent.files import sha256_of
from mmsent.errors import MmsentError

_S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")
# S3's bucket naming rules: 3-63 characters, lower-case letters, digits, dots and hyphens.
# S3's general-purpose bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html):
# 3-63 lower-case letters, digits, dots and hyphens, a letter or digit at each end, no two adjacent periods, not
# an IP address, none of the prefixes (xn--, sthree-, amzn-s3-demo-) and suffixes (-s3alias, --ol-s3, .mrap,
# --x-s3, --table-s3) that S3 reserves.
BUCKET_NAME = re.compile(r"^(?!xn--|sthree-|amzn-s3-demo-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)"
                         r"(?!.*(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CHECKSUM_KEY = "sha256"  # object metadata that records the uploaded file's checksum


UPLOAD_WORKERS = 16  # S3 serves many requests at once; one at a time, MELD's 13.7k clips are hours of round trips


class S3UriError(MmsentError, ValueError):
    def __init__(self, message: str, bucket: str | None = None) -> None:
        super().__init__(message)
        self.bucket = bucket  # the invalid bucket name, when the URI has the s3://bucket/ form


class BucketError(MmsentError, ValueError):
    """The bucket is missing, forbidden, or in another region than the job."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI.match(uri)
    if not match or not BUCKET_NAME.match(match.group(1)):
        raise S3UriError(f"not an s3://bucket/prefix URI with a valid bucket name: {uri!r}", match and match.group(1))
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
        # 403 is what S3 answers for a missing key when the caller may not s3:ListBucket: upload it.
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "403", "Forbidden", "AccessDenied"):
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {CHECKSUM_KEY: checksum}})
    return True


def upload_files(s3, files: list[tuple[Path, str]], bucket: str, workers: int = UPLOAD_WORKERS,
                 progress: bool = True) -> dict[str, bool]:
    """Upload each (path, key) unless unchanged, `workers` at a time (boto3's clients are thread-safe),
    under one progress bar in bytes and files. {key: uploaded}; the first failure stops the rest."""
    sizes = {key: Path(path).stat().st_size for path, key in files}
    done: dict[str, bool] = {}
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="upload", disable=not progress,
              file=sys.stderr) as bar, ThreadPoolExecutor(max_workers=workers) as pool:  # fmt: skip
        pending = {pool.submit(upload_file, s3, path, bucket, key): key for path, key in files}
        try:
            for finished in as_completed(pending):
                key = pending[finished]
                done[key] = finished.result()
                bar.update(sizes[key])
                bar.set_postfix_str(f"{len(done)}/{len(files)} files", refresh=False)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done


def s3_client(session, workers: int = UPLOAD_WORKERS):
    """An S3 client whose connection pool fits `workers` threads (botocore's default is 10)."""
    from botocore.config import Config

    return session.client("s3", config=Config(max_pool_connections=workers))


def check_bucket(s3, bucket: str, region: str) -> None:
    """The bucket exists, may be used, and lies in the job's region (SageMaker reads channels and
    writes outputs in its own region): else BucketError naming what is wrong."""
    try:
        response = s3.head_bucket(Bucket=bucket)
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except s3.exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code"))
        headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise BucketError(f"bucket {bucket} does not exist (create it in {region}, or pass another --bucket)") from None
        if code in ("403", "Forbidden", "AccessDenied"):
            raise BucketError(f"bucket {bucket}: access denied; launch needs s3:ListBucket, s3:GetObject and "
                              "s3:PutObject on it (README, SageMaker: permissions)") from None  # fmt: skip
        if "x-amz-bucket-region" not in headers:  # a 301 or 400 from another region names it; anything else is not ours
            raise
    found = headers.get("x-amz-bucket-region")
    if found and found != region:
        raise BucketError(f"bucket {bucket} is in {found}, the job would run in {region}: use a bucket in {region}, "
                          f"or --region {found}")  # fmt: skip


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
