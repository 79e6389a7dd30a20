"""Uploading a dataset to S3: one file at a time vs the launcher's upload pool, and a re-launch.

Starts moto's S3 server in its own process on 127.0.0.1, writes N small files (MELD.Raw is 13.7k
clips), and uploads them with `mmsent.sagemaker.s3.upload_files` three times, side by side in one
run: with 1 worker (what `mmsent launch` did before: HEAD + PUT per file, in turn), with the
launcher's pool, and again with the pool onto the same keys (a re-launch: every file unchanged,
HEAD only). Prints seconds, files/s and the ratios.

A loopback server answers in well under a millisecond, where S3 takes tens: the pool's gain
against real S3 is larger than here, where the two cores also run the server.

    .venv/bin/python benchmarks/bench_upload.py [--files 2000] [--bytes 2048]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mmsent.sagemaker.s3 import UPLOAD_WORKERS, upload_files

BUCKET = "mmsent-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--bytes", type=int, default=2048, help="size of each file")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=f"http://127.0.0.1:{port}", config=Config(max_pool_connections=UPLOAD_WORKERS))
        _wait_for(s3)
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for i in range(args.files):
                path = Path(tmp) / f"dia{i}_utt0.mp4"
                path.write_bytes(os.urandom(args.bytes))
                files.append(path)
            rows = [
                ("sequential (1 worker)", *_timed(s3, files, "one", 1)),
                (f"pool ({UPLOAD_WORKERS} workers)", *_timed(s3, files, "pool", UPLOAD_WORKERS)),
                (f"re-launch, all unchanged ({UPLOAD_WORKERS} workers)", *_timed(s3, files, "pool", UPLOAD_WORKERS)),
            ]
    finally:
        server.terminate()
        server.wait()
    print(f"\n{args.files} files of {args.bytes} bytes to moto's S3 on 127.0.0.1 ({os.cpu_count()} cores)\n")
    print(f"| upload | seconds | files/s | uploaded | vs sequential |\n|---|---:|---:|---:|---:|")
    base = rows[0][1]
    for name, seconds, uploaded in rows:
        print(f"| {name} | {seconds:.1f} | {args.files / seconds:.0f} | {uploaded} | {base / seconds:.2f}x |")


def _timed(s3, files: list[Path], prefix: str, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    done = upload_files(s3, [(p, f"{prefix}/{p.name}") for p in files], BUCKET, workers=workers, progress=False)
    return time.perf_counter() - started, sum(done.values())


def _wait_for(s3) -> None:
    for _ in range(100):
        try:
            s3.list_buckets()
            return
        except (BotoCoreError, ClientError):  # the server is still starting
            time.sleep(0.1)
    raise SystemExit("moto's server did not start")


if __name__ == "__main__":
    main()
