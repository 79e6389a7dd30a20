"""The CreateTrainingJob request: built from typed settings, and validated before any API call.

botocore checks types and required fields, not SageMaker's own rules, so a typo in a job name or
role ARN would otherwise surface only as a failed API call, after uploads. `validate_request`
checks each rule the service documents for the fields we set, and names every violation at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from mmsent.sagemaker.images import TRAINING_INSTANCES, gpus_per_instance, unknown_instance_type
from mmsent.sagemaker.package import ENTRY_POINT
from mmsent.sagemaker.s3 import S3UriError, parse_s3_uri
from mmsent.training.tracking import METRIC_DEFINITIONS
from mmsent.errors import MmsentError

SERVICE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")  # job, tuning job and endpoint names: hyphens between
ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
INPUT_MODES: tuple[str, ...] = ("File", "FastFile")
MAX_RUNTIME_SECONDS = 28 * 24 * 3600  # the service's limit
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
MAX_TAGS = 50
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"


class LaunchValidationError(MmsentError, ValueError):
    """The request breaks SageMaker's rules; the message lists every problem found."""

    request = "training job"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"the {self.request} request is invalid:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class JobSettings:
    job_name: str
    role_arn: str
    image_uri: str
    region: str
    channels: dict[str, str]  # channel name -> s3:// prefix
    output_uri: str  # s3:// prefix for model.tar.gz and output.tar.gz
    sourcedir_uri: str  # s3:// URI of sourcedir.tar.gz
    checkpoint_uri: str  # s3:// prefix that /opt/ml/checkpoints syncs to
    tensorboard_uri: str  # s3:// prefix that /opt/ml/output/tensorboard syncs to
    training_args: dict[str, str] = field(default_factory=dict)  # kebab-case names, without the dashes
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 50
    input_mode: str = "File"
    spot: bool = False
    max_run_seconds: int = 24 * 3600
    max_wait_seconds: int | None = None  # spot only: run time plus time spent waiting for capacity
    distribution: str = "none"  # none | torchrun
    tags: dict[str, str] = field(default_factory=dict)


def build_request(s: JobSettings) -> dict:
    """The CreateTrainingJob request. Hyperparameter values are JSON-encoded, as the SageMaker SDK
    writes them and the training toolkit reads them back."""
    hyperparameters = {
        "sagemaker_program": ENTRY_POINT,
        "sagemaker_submit_directory": s.sourcedir_uri,
        "sagemaker_region": s.region,
        "sagemaker_container_log_level": 20,
    }
    if s.distribution == "torchrun":
        hyperparameters["sagemaker_torch_distributed_enabled"] = True
    hyperparameters |= s.training_args
    stopping = {"MaxRuntimeInSeconds": s.max_run_seconds}
    if s.max_wait_seconds is not None:
        stopping["MaxWaitTimeInSeconds"] = s.max_wait_seconds  # without --spot, validation refuses it
    elif s.spot:  # twice the run for capacity, within the service's limit (never below the run itself)
        stopping["MaxWaitTimeInSeconds"] = max(min(2 * s.max_run_seconds, MAX_RUNTIME_SECONDS), s.max_run_seconds)
    return {
        "TrainingJobName": s.job_name,
        "RoleArn": s.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": s.image_uri,
            "TrainingInputMode": s.input_mode,
            "MetricDefinitions": METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": {k: json.dumps(v) for k, v in hyperparameters.items()},
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
                "InputMode": s.input_mode,
            }
            for name, uri in s.channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": s.output_uri},
        "ResourceConfig": {"InstanceType": s.instance_type, "InstanceCount": s.instance_count, "VolumeSizeInGB": s.volume_size_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": s.spot,
        "CheckpointConfig": {"S3Uri": s.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH},
        "TensorBoardOutputConfig": {"S3OutputPath": s.tensorboard_uri, "LocalPath": TENSORBOARD_LOCAL_PATH},
        "Tags": [{"Key": k, "Value": v} for k, v in s.tags.items()],
    }


def is_service_name(name: str, longest: int) -> bool:
    """SageMaker's rule for the names of training jobs (63), tuning jobs (32) and endpoints (63): its pattern,
    and at most `longest` characters. The service's pattern alone, `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`, lets
    hyphens past the length, and botocore checks no maximum length: a longer name reached the service."""
    return len(name) <= longest and SERVICE_NAME.match(name) is not None


def validate_request(request: dict) -> None:
    """Raise LaunchValidationError listing each rule the request breaks; return if none."""
    problems: list[str] = []
    name = request["TrainingJobName"]
    if not is_service_name(name, 63):
        problems.append(f"job name {name!r}: 1-63 letters, digits and hyphens, starting and ending with a letter or digit")
    if not ROLE_ARN.match(request["RoleArn"]):
        problems.append(f"role {request['RoleArn']!r} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)")
    uris = [("output path", request["OutputDataConfig"]["S3OutputPath"]),
            ("checkpoint URI", request["CheckpointConfig"]["S3Uri"]),
            ("TensorBoard output path", request["TensorBoardOutputConfig"]["S3OutputPath"]),
            ("sourcedir", json.loads(request["HyperParameters"]["sagemaker_submit_directory"]))]  # fmt: skip
    uris += [(f"channel {c['ChannelName']!r}", c["DataSource"]["S3DataSource"]["S3Uri"]) for c in request["InputDataConfig"]]
    bad_buckets: dict[str, list[str]] = {}  # one line per bad bucket name, however many URIs use it
    for what, uri in uris:
        try:
            parse_s3_uri(uri)
        except S3UriError as error:
            if error.bucket:
                bad_buckets.setdefault(error.bucket, []).append(what)
            else:
                problems.append(f"{what}: {error}")
    for bucket, uses in bad_buckets.items():
        problems.append(f"bucket {bucket!r} (in the {', '.join(uses)}): not a valid S3 bucket name (3-63 lower-case "
                        "letters, digits, dots and hyphens; not an IP address; no prefix or suffix S3 reserves)")  # fmt: skip
    if not request["InputDataConfig"] or "train" not in [c["ChannelName"] for c in request["InputDataConfig"]]:
        problems.append("a 'train' input channel is required")
    mode = request["AlgorithmSpecification"]["TrainingInputMode"]
    if mode not in INPUT_MODES:
        problems.append(f"input mode {mode!r}: expected one of {', '.join(INPUT_MODES)}")
    hyperparameters = request["HyperParameters"]
    if len(hyperparameters) > MAX_HYPERPARAMETERS:
        problems.append(f"{len(hyperparameters)} hyperparameters: at most {MAX_HYPERPARAMETERS}")
    for key, value in hyperparameters.items():
        if not 0 < len(key) <= MAX_HYPERPARAMETER_KEY:
            problems.append(f"hyperparameter name {key[:40]!r}...: 1-{MAX_HYPERPARAMETER_KEY} characters")
        if len(value) > MAX_HYPERPARAMETER_VALUE:
            problems.append(f"hyperparameter {key!r}: value of {len(value)} characters, at most {MAX_HYPERPARAMETER_VALUE}")
    resources = request["ResourceConfig"]
    if problem := unknown_instance_type(resources["InstanceType"], TRAINING_INSTANCES):
        problems.append(problem)
    if not 1 <= resources["InstanceCount"] <= 100:
        problems.append(f"instance count {resources['InstanceCount']}: 1 to 100")
    if not 1 <= resources["VolumeSizeInGB"] <= 16384:
        problems.append(f"volume size {resources['VolumeSizeInGB']} GB: 1 to 16384")
    stopping = request["StoppingCondition"]
    if not 1 <= stopping["MaxRuntimeInSeconds"] <= MAX_RUNTIME_SECONDS:
        problems.append(f"max run {stopping['MaxRuntimeInSeconds']} s: 1 to {MAX_RUNTIME_SECONDS} (28 days)")
    if request["EnableManagedSpotTraining"]:
        wait = stopping.get("MaxWaitTimeInSeconds")
        if wait is None or wait < stopping["MaxRuntimeInSeconds"]:
            problems.append(f"spot: max wait ({wait} s) must be at least the max run ({stopping['MaxRuntimeInSeconds']} s)")
        elif wait > MAX_RUNTIME_SECONDS:
            problems.append(f"spot: max wait {wait} s: at most {MAX_RUNTIME_SECONDS} (28 days)")
    elif "MaxWaitTimeInSeconds" in stopping:
        problems.append("max wait applies to spot training only (--spot)")
    torchrun = json.loads(hyperparameters.get("sagemaker_torch_distributed_enabled", "false"))
    if torchrun and not (resources["InstanceCount"] > 1 or gpus_per_instance(resources["InstanceType"]) > 1):
        problems.append("torchrun distribution needs several GPUs or several instances")
    if resources["InstanceCount"] > 1 and not torchrun:
        problems.append(f"instance count {resources['InstanceCount']} without --distribution torchrun: each instance "
                        "would train its own copy of the model; add --distribution torchrun")  # fmt: skip
    if len(request["Tags"]) > MAX_TAGS:
        problems.append(f"{len(request['Tags'])} tags: at most {MAX_TAGS}")
    for tag in request["Tags"]:
        if not 1 <= len(tag["Key"]) <= 128 or len(tag["Value"]) > 256 or tag["Key"].startswith("aws:"):
            problems.append(f"tag {tag['Key']!r}: key of 1-128 characters not starting with 'aws:', value of at most 256")
    if problems:
        raise LaunchValidationError(problems)
