"""`mmsent launch`: package, upload, validate, CreateTrainingJob, and follow the job to its end.

Credentials, region and endpoints come from boto3's usual chain (environment, profile, instance
role); nothing secret is printed or written. Every field is validated before the first API call.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mmsent.data.layout import CHANNELS, MEDIA_NOTE, find_splits
from mmsent.sagemaker.package import build_sourcedir
from mmsent.sagemaker.request import JobSettings, build_request, validate_request
from mmsent.sagemaker.s3 import check_bucket, parse_s3_uri, s3_client, upload_file, upload_files

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


@dataclass(frozen=True)
class Storage:
    bucket: str
    prefix: str  # every object mmsent writes for a job lives under s3://bucket/prefix/

    def uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, self.prefix.strip("/"), *parts]).replace("//", "/")


def job_uris(storage: Storage, job_name: str) -> dict[str, str]:
    return {
        "output_uri": storage.uri("output"),
        "sourcedir_uri": storage.uri(job_name, "source", "sourcedir.tar.gz"),
        "checkpoint_uri": storage.uri(job_name, "checkpoints"),
        "tensorboard_uri": storage.uri(job_name, "tensorboard"),
    }


def upload_data(s3, data_dir: Path, channels: dict[str, str]) -> None:
    """Upload each split of a local dataset to the channel URI `data_channels` planned for it, all
    files at once through the upload pool; files already there unchanged are skipped."""
    planned: dict[str, list[tuple[Path, str]]] = {}
    buckets = set()
    for split, files in find_splits(data_dir).items():
        channel = CHANNELS[split]
        bucket, prefix = parse_s3_uri(channels[channel])
        buckets.add(bucket)
        prefix = prefix.rstrip("/")
        planned[channel] = [(files.csv_path, f"{prefix}/{files.csv_path.name}")]
        if (note := files.csv_path.parent / MEDIA_NOTE).is_file():  # the dataset's own decode settings
            planned[channel].append((note, f"{prefix}/{MEDIA_NOTE}"))
        if files.clip_dir is not None:
            # Clips keep their folder name (train_splits/...) unless they sit beside the CSV.
            below = "" if files.clip_dir == files.csv_path.parent else f"{files.clip_dir.name}/"
            planned[channel] += [(p, f"{prefix}/{below}{p.name}") for p in sorted(files.clip_dir.glob("*.mp4")) if p.is_file()]
    (bucket,) = buckets  # data_channels puts every channel in the one --bucket
    uploaded = upload_files(s3, [item for items in planned.values() for item in items], bucket)
    for channel, items in planned.items():
        count = sum(uploaded[key] for _, key in items)
        print(f"channel {channel}: {count} files uploaded, {len(items) - count} unchanged, {channels[channel]}")


def data_channels(data_dir: Path, storage: Storage) -> dict[str, str]:
    """The channel URIs that `upload_data` fills for a local dataset, known before any upload."""
    name = Path(data_dir).resolve().name
    return {CHANNELS[split]: storage.uri("data", name, CHANNELS[split]) + "/" for split in find_splits(data_dir)}


def launch(settings: JobSettings, session, framework_version: str, data_dir: Path | None = None,
           dry_run: bool = False) -> dict:
    """Validate, then (unless dry_run) upload the data to its channels, the sources (their
    requirements.txt for the image of `framework_version`), and create the job. Returns the request."""
    request = build_request(settings)
    validate_request(request)
    if dry_run:
        return request
    upload_inputs(settings, session, framework_version, data_dir)
    session.client("sagemaker").create_training_job(**request)
    print(f"created training job {settings.job_name} ({settings.instance_count} x {settings.instance_type}"
          f"{', spot' if settings.spot else ''}) in {settings.region}")  # fmt: skip
    return request


def upload_inputs(settings: JobSettings, session, framework_version: str, data_dir: Path | None) -> None:
    """What a training job reads from S3: the data (when given as a local folder) and the sources."""
    s3 = s3_client(session)
    check_bucket(s3, parse_s3_uri(settings.sourcedir_uri)[0], settings.region)
    if data_dir is not None:
        upload_data(s3, data_dir, settings.channels)
    bucket, key = parse_s3_uri(settings.sourcedir_uri)
    with tempfile.TemporaryDirectory() as tmp:
        upload_file(s3, build_sourcedir(Path(tmp) / "sourcedir.tar.gz", framework_version), bucket, key)


def wait_for_job(session, job_name: str, poll_seconds: float = 30.0) -> dict:
    """Follow the job's status (and its CloudWatch logs where reachable) until it ends."""
    sagemaker = session.client("sagemaker")
    logs = LogFollower(session.client("logs"), job_name)
    last = None
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=job_name)
        state = (job["TrainingJobStatus"], job.get("SecondaryStatus"))
        if state != last:
            message = (job.get("SecondaryStatusTransitions") or [{}])[-1].get("StatusMessage", "")
            print(f"{time.strftime('%H:%M:%S')} {job_name}: {state[0]} / {state[1]} {message}".rstrip(), flush=True)
            last = state
        logs.print_new()
        if job["TrainingJobStatus"] in TERMINAL_STATUSES:
            return job
        time.sleep(poll_seconds)


class LogFollower:
    """Prints new CloudWatch log events of the job's streams; silent once it finds them unreachable."""

    def __init__(self, logs, job_name: str) -> None:
        self.logs, self.job_name = logs, job_name
        self.tokens: dict[str, str | None] = {}
        self.reachable = True

    def print_new(self) -> None:
        if not self.reachable:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=self.job_name + "/")
            for stream in streams.get("logStreams", []):
                name = stream["logStreamName"]
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": name, "startFromHead": True}
                if self.tokens.get(name):
                    kwargs["nextToken"] = self.tokens[name]
                page = self.logs.get_log_events(**kwargs)
                for event in page.get("events", []):
                    print(f"[{name.split('/')[-1]}] {event['message']}", flush=True)
                self.tokens[name] = page.get("nextForwardToken")
        except (ClientError, BotoCoreError) as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code != "ResourceNotFoundException":  # the log group appears once the job starts
                print(f"note: CloudWatch logs are not reachable ({type(error).__name__}); following the status only")
                self.reachable = False


def print_request(request: dict) -> None:
    print(json.dumps(request, indent=2, default=str))
