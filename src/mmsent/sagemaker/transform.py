"""`mmsent transform`: a model dir classifying many clips as a SageMaker batch transform job.

The job runs the archive `deploy` packs (model dir, code/, wheels) in the same inference image, one
request per record, with no endpoint left running. Its input is an S3 prefix in one of two shapes:

- clips: one media file per object (a folder uploaded, or a prefix already in S3). Each object is one
  request (application/octet-stream, the handler's clip bytes); its answer lands as `<key>.out`.
- lines: JSON lines made from a MELD-format CSV, one utterance per line: the handler's JSON request
  fields (text, the clip as base64, speaker and the dialogue's turns) beside the row's name, true labels
  and the issues found while packing it. SplitType Line sends one line per request; InputFilter passes
  the handler only its fields, and JoinSource Input with OutputFilter writes each answer beside the
  row's name and labels (SageMaker's "associate prediction results with input records": the joined
  record gains the answer as SageMakerOutput). Each `part-N.jsonl` gets `part-N.jsonl.out`, a line per row.

`read_results` turns either shape's output back into the Predictions `mmsent predict` makes.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mmsent.errors import SettingsError
from mmsent.sagemaker.deploy import follow_status, model_request, model_server_workers
from mmsent.sagemaker.images import TRANSFORM_INSTANCES, unknown_instance_type
from mmsent.sagemaker.request import ROLE_ARN, is_service_name
from mmsent.sagemaker.s3 import parse_s3_uri

CLIPS, LINES = "clips", "lines"
MAX_PAYLOAD_MB = 100  # the service's limit for MaxPayloadInMB, and for it times MaxConcurrentTransforms
DEFAULT_PAYLOAD_MB = 6  # the service's default
MAX_INVOCATION_SECONDS = 3600  # ModelClientConfig's limit
REQUEST_FIELDS = ("text", "media", "speaker", "past", "future")  # what the handler reads from a JSON request
INPUT_FILTER = "$[" + ",".join(f"'{name}'" for name in REQUEST_FIELDS) + "]"
OUTPUT_FILTER = "$['name','labels','issues','SageMakerOutput']"
RECORDS_PER_FILE = 500  # lines per part file: the unit SageMaker spreads across instances (ShardedByS3Key)
OUTPUT_SUFFIX = ".out"  # what batch transform appends to an input object's name for its output


@dataclass(frozen=True)
class TransformSettings:
    job_name: str
    role_arn: str
    image_uri: str
    model_data_url: str  # s3:// of model.tar.gz
    region: str
    input_uri: str  # s3:// prefix of the records
    output_uri: str  # s3:// prefix for the answers
    records: str  # CLIPS or LINES
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    max_payload_mb: int = DEFAULT_PAYLOAD_MB
    max_concurrent: int | None = None  # requests at a time per instance; None: one per model-server worker
    invocation_timeout: int = 600

    def __post_init__(self) -> None:
        problems = []
        if not is_service_name(self.job_name, 63):
            problems.append(f"--job-name {self.job_name!r}: 1 to 63 letters, digits and hyphens, starting with a letter or digit")
        if not ROLE_ARN.match(self.role_arn):
            problems.append(f"--role {self.role_arn!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        # SageMaker offers batch transform no Graviton (arm64) instance, so its list alone keeps the x86_64 image's.
        if problem := unknown_instance_type(self.instance_type, TRANSFORM_INSTANCES):
            problems.append(f"--{problem}")
        if self.instance_count < 1:
            problems.append(f"--instance-count must be at least 1, got {self.instance_count}")
        if not 1 <= self.max_payload_mb <= MAX_PAYLOAD_MB:
            problems.append(f"--max-payload-mb {self.max_payload_mb}: SageMaker takes 1 to {MAX_PAYLOAD_MB} MB per request")
        elif self.concurrency < 1:
            problems.append(f"--max-concurrent {self.concurrency}: at least 1 request at a time")
        elif self.concurrency * self.max_payload_mb > MAX_PAYLOAD_MB:
            problems.append(f"--max-concurrent {self.concurrency} x --max-payload-mb {self.max_payload_mb} = "
                            f"{self.concurrency * self.max_payload_mb} MB: SageMaker allows at most {MAX_PAYLOAD_MB} MB in "
                            "flight per instance; lower either")  # fmt: skip
        if not 1 <= self.invocation_timeout <= MAX_INVOCATION_SECONDS:
            problems.append(f"--invocation-timeout {self.invocation_timeout}: 1 to {MAX_INVOCATION_SECONDS} seconds")
        for option, uri in (("input", self.input_uri), ("output", self.output_uri)):
            try:
                parse_s3_uri(uri)
            except ValueError as problem:
                problems.append(f"{option}: {problem}")
        if self.records not in (CLIPS, LINES):
            problems.append(f"records must be {CLIPS} or {LINES}, got {self.records!r}")
        if problems:
            raise SettingsError("the batch transform job cannot be created:\n  - " + "\n  - ".join(problems))

    @property
    def concurrency(self) -> int:
        return self.max_concurrent if self.max_concurrent is not None else model_server_workers(self.instance_type)


def transform_requests(s: TransformSettings) -> dict[str, dict]:
    """The CreateModel and CreateTransformJob requests, in the order they are sent (both named after the job)."""
    payload_bytes = str(s.max_payload_mb * 2**20)
    environment = {
        # TorchServe refuses bodies over 6.5 MB unless told otherwise; the toolkit's TorchServe settings turn on
        # configuration by TS_* variables (enable_envvars_config=true in sagemaker-pytorch-inference's
        # etc/default-ts.properties) but set no request size of their own.
        "TS_MAX_REQUEST_SIZE": payload_bytes,
        "TS_MAX_RESPONSE_SIZE": payload_bytes,
        # The model server's own per-request timeout (the toolkit's default_response_timeout, 60 s by default):
        # as long as the job waits for an answer, so a long clip on a CPU instance is not cut off sooner.
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(s.invocation_timeout),
    }
    lines = s.records == LINES
    job = {
        "TransformJobName": s.job_name,
        "ModelName": s.job_name,
        "MaxConcurrentTransforms": s.concurrency,
        "MaxPayloadInMB": s.max_payload_mb,
        "BatchStrategy": "SingleRecord",  # one clip per request: the handler's contract
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": s.invocation_timeout, "InvocationsMaxRetries": 3},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s.input_uri}},
            "ContentType": "application/json" if lines else "application/octet-stream",
            "SplitType": "Line" if lines else "None",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": s.output_uri, "Accept": "application/json", "AssembleWith": "Line" if lines else "None"},
        "TransformResources": {"InstanceType": s.instance_type, "InstanceCount": s.instance_count},
    }
    if lines:
        job["DataProcessing"] = {"InputFilter": INPUT_FILTER, "JoinSource": "Input", "OutputFilter": OUTPUT_FILTER}
    model = model_request(s.job_name, s.role_arn, s.image_uri, s.model_data_url, s.region, s.instance_type, environment)
    return {"create_model": model, "create_transform_job": job}


def name_taken(sagemaker, name: str) -> str | None:
    """What already holds the name that a transform job and its Model both take ("transform job",
    "model"), or None. Asked before anything is uploaded: the job's inputs go under a prefix named after
    it, so a second job of one name would overwrite the first's inputs before CreateModel refused it."""
    from botocore.exceptions import ClientError

    for kind, describe in (("transform job", lambda: sagemaker.describe_transform_job(TransformJobName=name)),
                           ("model", lambda: sagemaker.describe_model(ModelName=name))):  # fmt: skip
        try:
            describe()
        except ClientError as failure:
            # A name not in use: ValidationException "Could not find ..." (the service's answer, and moto's);
            # ResourceNotFound is what botocore's model of DescribeTransformJob lists.
            if failure.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                continue
            raise
        return kind
    return None


def create_transform_job(sagemaker, requests: dict[str, dict]) -> None:
    sagemaker.create_model(**requests["create_model"])
    sagemaker.create_transform_job(**requests["create_transform_job"])


@dataclass
class PackedInput:
    """What goes to the input prefix: (local file, key below the prefix) pairs, in which shape, and the largest record."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    records: str = CLIPS
    count: int = 0
    largest: tuple[int, str] = (0, "")  # (bytes, the record's name)


def clips_in(folder: Path) -> PackedInput:
    """Every file under `folder` (hidden ones aside) as a clip, keyed by its path below it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SettingsError(f"--clips-dir {folder}: no such folder")
    files = [(p, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]  # fmt: skip
    if not files:
        raise SettingsError(f"--clips-dir {folder}: no files to classify")
    largest = max((p.stat().st_size, key) for p, key in files)
    return PackedInput(files, CLIPS, len(files), largest)


def clips_at(s3, uri: str) -> PackedInput:
    """The objects already under an S3 prefix, as clips (listed for their count and sizes; nothing copied)."""
    bucket, prefix = parse_s3_uri(uri)
    sizes = [(item["Size"], item["Key"]) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
             for item in page.get("Contents", []) if not item["Key"].endswith("/")]  # fmt: skip
    if not sizes:
        raise SettingsError(f"--input-uri {uri}: no objects under it")
    return PackedInput([], CLIPS, len(sizes), max(sizes))


def json_lines(requests: Iterable, folder: Path, instance_count: int = 1) -> PackedInput:
    """predict's Requests (from a MELD-format CSV) as JSON-lines part files in `folder`, the clips inlined as
    base64, spread over at least `instance_count` files. A clip missing on disk goes as its transcript alone,
    its row naming the issue, as `mmsent predict --csv` names it."""
    from mmsent.data.media import MISSING

    requests = list(requests)
    if not requests:
        raise SettingsError("--csv: no rows to classify")
    parts = max(instance_count, math.ceil(len(requests) / RECORDS_PER_FILE))
    per_file = math.ceil(len(requests) / parts)
    packed = PackedInput(records=LINES, count=len(requests))
    for first in range(0, len(requests), per_file):
        path = Path(folder) / f"part-{first // per_file:05d}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for request in requests[first : first + per_file]:
                line = json.dumps(_record(request, MISSING)) + "\n"
                packed.largest = max(packed.largest, (len(line.encode("utf-8")), request.name))
                handle.write(line)
        packed.files.append((path, path.name))
    return packed


def _record(request, missing: str) -> dict:
    """One JSON line: the handler's request fields, every one present (null where absent, so InputFilter always
    finds them), beside the row's name, true labels and issues, which OutputFilter keeps with the answer."""
    from mmsent.labels import TASKS

    clip = request.clip
    present = clip is not None and Path(clip).is_file()
    return {
        "name": request.name,
        "labels": {task: TASKS[task][i] for task, i in request.labels.items()} if request.labels else None,
        "issues": [missing] if clip is not None and not present else [],
        "text": request.text,
        "media": base64.b64encode(Path(clip).read_bytes()).decode("ascii") if present else None,
        "speaker": request.speaker,
        "past": [{"speaker": t.speaker, "text": t.text} for t in request.past],
        "future": [{"speaker": t.speaker, "text": t.text} for t in request.future],
    }


def payload_for(packed: PackedInput, given_mb: int | None) -> int:
    """MaxPayloadInMB: the one given, checked against the largest record, or the smallest whole number of MB
    (at least SageMaker's default) that holds it. A record no payload holds is refused, named."""
    size, name = packed.largest
    needed = max(1, math.ceil(size / 1e6))  # MB as 10^6 bytes: a little under the service's 2^20, on the safe side
    if needed > MAX_PAYLOAD_MB:
        raise SettingsError(f"{name}: {size / 1e6:.1f} MB as a request, over the {MAX_PAYLOAD_MB} MB SageMaker sends at once; "
                            "classify it with mmsent predict, or cut it shorter")  # fmt: skip
    if given_mb is None:
        return max(DEFAULT_PAYLOAD_MB, needed)
    if needed > given_mb:
        raise SettingsError(f"--max-payload-mb {given_mb}: {name} is {size / 1e6:.1f} MB as a request; give at least {needed}")
    return given_mb


def wait_for_transform(sagemaker, name: str, poll_seconds: float = 30.0, say=print) -> dict:
    return follow_status(lambda: sagemaker.describe_transform_job(TransformJobName=name), "TransformJobStatus",
                         f"transform job {name}", lambda status: status in ("Completed", "Failed", "Stopped"),
                         poll_seconds, say)  # fmt: skip


def read_results(s3, job: dict) -> list:
    """The Predictions of a finished transform job (DescribeTransformJob's answer), read from its output
    prefix: for clips, one object per clip named after it; for lines, a line per row with its name. A clip
    whose answer is missing is refused, named, rather than left out of the results unsaid."""
    from mmsent.inference.predict import Prediction

    if job["TransformJobStatus"] != "Completed":
        raise SettingsError(f"transform job {job['TransformJobName']} is {job['TransformJobStatus']}"
                            + (f": {job['FailureReason']}" if job.get("FailureReason") else "") + "; no results to read")  # fmt: skip
    bucket, prefix = parse_s3_uri(job["TransformOutput"]["S3OutputPath"])
    lines = "DataProcessing" in job and job["DataProcessing"].get("JoinSource") == "Input"
    predictions = []
    for key, body in _outputs(s3, bucket, prefix):
        if lines:
            for line in filter(str.strip, body.splitlines()):
                record = json.loads(line)
                extra = {"name": record["name"], "labels": record.get("labels")}
                predictions += [Prediction.from_dict(row | extra | {"issues": [*record.get("issues", []), *row.get("issues", [])]})
                                for row in record["SageMakerOutput"]["predictions"]]  # fmt: skip
        else:
            name = key[len(prefix) :].lstrip("/")[: -len(OUTPUT_SUFFIX)]
            predictions += [Prediction.from_dict(row | {"name": name}) for row in json.loads(body)["predictions"]]
    if not lines:
        _check_every_clip_answered(s3, job, {p.name for p in predictions})
    return predictions


def _outputs(s3, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
    keys = sorted(item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for item in page.get("Contents", []) if item["Key"].endswith(OUTPUT_SUFFIX))  # fmt: skip
    for key in keys:
        yield key, s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def _check_every_clip_answered(s3, job: dict, answered: set[str]) -> None:
    bucket, prefix = parse_s3_uri(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    names = {item["Key"][len(prefix) :].lstrip("/") for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
             for item in page.get("Contents", []) if not item["Key"].endswith("/")}  # fmt: skip
    if missing := sorted(names - answered):
        raise SettingsError(f"transform job {job['TransformJobName']}: {len(missing)} of {len(names)} clips have no answer in "
                            f"{job['TransformOutput']['S3OutputPath']}, e.g. {', '.join(missing[:3])}")  # fmt: skip
