import json
from dataclasses import replace

import pytest

from mmsent.sagemaker.request import JobSettings, LaunchValidationError, build_request, validate_request
from mmsent.training.tracking import METRIC_DEFINITIONS

GOOD = JobSettings(
    job_name="mmsent-test-1",
    role_arn="arn:aws:iam::123456789012:role/service-role/SageMakerRole",
    image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
    region="us-east-1",
    channels={"train": "s3://my-bucket/mmsent/data/train/", "validation": "s3://my-bucket/mmsent/data/validation/"},
    output_uri="s3://my-bucket/mmsent/output",
    sourcedir_uri="s3://my-bucket/mmsent/mmsent-test-1/source/sourcedir.tar.gz",
    checkpoint_uri="s3://my-bucket/mmsent/mmsent-test-1/checkpoints",
    tensorboard_uri="s3://my-bucket/mmsent/mmsent-test-1/tensorboard",
    training_args={"epochs": "3", "batch-size": "16"},
)


def test_a_good_request_has_the_contract_metrics_checkpoints_and_tensorboard():
    request = build_request(GOOD)
    validate_request(request)
    hp = request["HyperParameters"]
    assert json.loads(hp["sagemaker_program"]) == "mmsent_train.py"
    assert json.loads(hp["sagemaker_submit_directory"]) == GOOD.sourcedir_uri
    assert json.loads(hp["epochs"]) == "3" and "sagemaker_torch_distributed_enabled" not in hp
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert request["AlgorithmSpecification"]["EnableSageMakerMetricsTimeSeries"] is True
    assert request["CheckpointConfig"] == {"S3Uri": GOOD.checkpoint_uri, "LocalPath": "/opt/ml/checkpoints"}
    assert request["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400} and request["EnableManagedSpotTraining"] is False


def test_spot_sets_a_max_wait_and_torchrun_a_distribution():
    request = build_request(replace(GOOD, spot=True, distribution="torchrun", instance_count=2))
    validate_request(request)
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * 86400
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"


def test_spot_without_a_max_wait_gets_one_the_service_accepts_however_long_the_run():
    request = build_request(replace(GOOD, spot=True, max_run_seconds=2_000_000))
    validate_request(request)  # twice the run would be above the 28 days the service allows
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] == 28 * 24 * 3600


BAD = [
    ({"job_name": "has space"}, "job name 'has space'"),
    ({"job_name": "-leading-hyphen"}, "job name"),
    ({"job_name": "x" * 64}, "job name"),
    ({"job_name": "x-" * 40 + "x"}, "job name"),  # hyphens between count too: the service's pattern alone let 81 characters pass
    ({"role_arn": "SageMakerRole"}, "is not an IAM role ARN"),
    ({"role_arn": "arn:aws:iam::12345:role/R"}, "is not an IAM role ARN"),
    ({"channels": {"train": "https://bucket/x"}}, "channel 'train': not an s3://"),
    ({"channels": {"train": "s3://Bad_Bucket/x"}}, "channel 'train'"),
    ({"channels": {"validation": "s3://my-bucket/v/"}}, "a 'train' input channel is required"),
    ({"output_uri": "/local/path"}, "output path"),
    ({"checkpoint_uri": "s3://ab/x"}, "checkpoint URI"),
    ({"tensorboard_uri": "s3:/missing-slash"}, "TensorBoard output path"),
    ({"sourcedir_uri": "file:///tmp/s.tar.gz"}, "sourcedir"),
    ({"input_mode": "Pipe"}, "input mode 'Pipe'"),
    ({"training_args": {f"k{i}": "v" for i in range(100)}}, "hyperparameters: at most 100"),
    ({"training_args": {"k" * 257: "v"}}, "hyperparameter name"),
    ({"training_args": {"note": "x" * 2600}}, "hyperparameter 'note': value of 2602 characters"),
    ({"instance_type": "g5.xlarge"}, "instance type 'g5.xlarge'"),
    ({"instance_type": "ml.fake.huge"}, "instance type 'ml.fake.huge': not one SageMaker offers for training jobs"),
    ({"output_uri": "s3://192.168.1.1/out"}, "bucket '192.168.1.1' (in the output path): not a valid S3 bucket name"),
    ({"instance_count": 0}, "instance count 0"),
    ({"volume_size_gb": 0}, "volume size 0 GB"),
    ({"max_run_seconds": 0}, "max run 0 s"),
    ({"max_run_seconds": 29 * 24 * 3600}, "max run"),
    ({"spot": True, "max_wait_seconds": 60}, "spot: max wait (60 s) must be at least the max run"),
    ({"spot": True, "max_wait_seconds": 30 * 24 * 3600}, "spot: max wait 2592000 s"),
    ({"max_wait_seconds": 90000}, "max wait applies to spot training only"),
    ({"distribution": "torchrun"}, "torchrun distribution needs several GPUs or several instances"),
    ({"instance_count": 2}, "instance count 2 without --distribution torchrun"),
    ({"tags": {"aws:reserved": "x"}}, "tag 'aws:reserved'"),
    ({"tags": {f"t{i}": "v" for i in range(51)}}, "51 tags: at most 50"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_every_rule_names_the_bad_value(change, message):
    with pytest.raises(LaunchValidationError) as caught:
        validate_request(build_request(replace(GOOD, **change)))
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_all_problems_are_reported_at_once():
    with pytest.raises(LaunchValidationError) as caught:
        validate_request(build_request(replace(GOOD, job_name="a b", role_arn="r", instance_count=0)))
    assert len(caught.value.problems) == 3


def test_a_bad_bucket_name_is_one_problem_naming_every_uri_that_uses_it():
    bad = {"output_uri": "s3://Bad_Bucket/out", "checkpoint_uri": "s3://Bad_Bucket/ck", "tensorboard_uri": "s3://Bad_Bucket/tb",
           "sourcedir_uri": "s3://Bad_Bucket/s.tar.gz", "channels": {"train": "s3://Bad_Bucket/t", "validation": "https://host/v"}}  # fmt: skip
    with pytest.raises(LaunchValidationError) as caught:
        validate_request(build_request(replace(GOOD, **bad)))
    assert caught.value.problems == [
        "channel 'validation': not an s3://bucket/prefix URI with a valid bucket name: 'https://host/v'",
        "bucket 'Bad_Bucket' (in the output path, checkpoint URI, TensorBoard output path, sourcedir, channel 'train'): "
        "not a valid S3 bucket name (3-63 lower-case letters, digits, dots and hyphens; not an IP address; no prefix or suffix S3 reserves)",
    ]
