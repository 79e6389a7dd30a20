"""`mmsent tune` against moto's S3 and SageMaker server on 127.0.0.1 (botocore validates every request), and
the listing of a tuning job's trials, best first, with botocore's Stubber (moto does not implement
ListTrainingJobsForHyperParameterTuningJob)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime

import boto3
import pytest
from botocore.stub import Stubber

from mmsent.environment import Environment
from mmsent.sagemaker.tuning import OBJECTIVE, format_trials, list_trials
from tests.cli import mmsent
from tests.sagemaker.conftest import BUCKET, ROLE, printed_requests
from tests.sagemaker.test_launch_moto import _keys

RANGES = ["--range", "learning-rate=1e-5:1e-3:log", "--range", "batch-size=8,16,32", "--range", "dropout=0.1:0.5"]


def _tune(env, *args: str):
    return mmsent("tune", "--role", ROLE, "--bucket", BUCKET, *args, env=env)


def _tuning_jobs(clients) -> list[str]:
    return [j["HyperParameterTuningJobName"] for j in clients["sagemaker"].list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]]


def test_dry_run_prints_the_tuning_request_with_each_range_and_the_shared_settings(aws):
    env, clients = aws
    before = _keys(clients["s3"])
    result = _tune(env, "--train-uri", f"s3://{BUCKET}/t/", "--validation-uri", f"s3://{BUCKET}/v/", *RANGES,
                   "--range", "epochs=2:6", "--tuning-job-name", "emotions-lr", "--warm-start", "emotions-earlier", "--dry-run",
                   "--", "--epochs", "4",
                   "--learning-rate", "3e-4", "--amp", "true")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (request,) = printed_requests(result.stdout)
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": OBJECTIVE}
    assert request["WarmStartConfig"] == {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "emotions-earlier"}],
                                          "WarmStartType": "IdenticalDataAndAlgorithm"}  # fmt: skip
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "learning-rate", "MinValue": "1e-5", "MaxValue": "1e-3", "ScalingType": "Logarithmic"},
        {"Name": "dropout", "MinValue": "0.1", "MaxValue": "0.5", "ScalingType": "Auto"}]  # fmt: skip
    assert ranges["IntegerParameterRanges"] == [{"Name": "epochs", "MinValue": "2", "MaxValue": "6", "ScalingType": "Auto"}]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "batch-size", "Values": ["8", "16", "32"]}]
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert "learning-rate" not in static and "epochs" not in static  # ranged: the strategy sets them
    assert json.loads(static["amp"]) == "true" and json.loads(static["video-weights"]) == "kinetics400"
    assert {d["Name"] for d in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]} >= {OBJECTIVE}
    assert _keys(clients["s3"]) == before and "emotions-lr" not in _tuning_jobs(clients)


def test_tune_uploads_what_every_trial_reads_and_creates_the_tuning_job(aws, sample_dir):
    env, clients = aws
    result = _tune(env, "--data-dir", str(sample_dir), *RANGES, "--tuning-job-name", "emotions-tune", "--strategy", "Random",
                   "--max-jobs", "6", "--max-parallel-jobs", "3", "--spot", "--early-stopping", "--", "--epochs", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    job = clients["sagemaker"].describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="emotions-tune")
    config = job["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Random" and config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    definition = job["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert {c["ChannelName"] for c in definition["InputDataConfig"]} == {"train", "validation", "test"}
    keys = _keys(clients["s3"])
    assert any(k.endswith("emotions-tune/source/sourcedir.tar.gz") for k in keys)
    assert any("/data/" in k and k.endswith("train_sent_emo.csv") for k in keys)
    assert "mmsent tuning describe emotions-tune" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--range", "learning-rate"], "expected NAME=MIN:MAX[:SCALE] or NAME=A,B,C"),
    (["--range", "nonsense=1:2"], "nonsense is not a numeric mmsent train setting"),
    (["--range", "learning-rate=1e-3:1e-5"], "MIN must be below MAX"),
    (["--range", "weight-decay=0:0.1:log"], "a log scale needs MIN above 0"),
    (["--range", "epochs=2.5:4"], "epochs takes integers"),
    (["--range", "batch-size=0,8"], "batch_size"),  # the low end, as mmsent train itself refuses it
    (["--range", "dropout=0.1:1.5"], "dropout"),  # the high end
    (["--range", "learning-rate=1e-5:1e-3:cubic"], "scale 'cubic'"),
    ([], "no --range"),
    (["--range", "dropout=0.1:0.5", "--tuning-job-name", "a-tuning-job-name-of-more-than-32-chars"], "1-32 letters"),
    (["--range", "dropout=0.1:0.5", "--max-jobs", "2", "--max-parallel-jobs", "3"], "--max-parallel-jobs 3: 1 to --max-jobs (2)"),
    (["--range", "dropout=0.1:0.5", "--strategy", "Hyperband", "--early-stopping"], "Hyperband stops trials early by itself"),
    (["--range", "dropout=0.1:0.5", "--instance-type", "ml.fake.huge"], "not one SageMaker offers for training jobs"),
])  # fmt: skip
def test_bad_tuning_settings_are_refused_before_any_call(aws, args, message):
    env, clients = aws
    before = _keys(clients["s3"]), _tuning_jobs(clients)
    result = _tune(env, "--train-uri", f"s3://{BUCKET}/t/", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert (_keys(clients["s3"]), _tuning_jobs(clients)) == before


def test_hyperband_spends_epochs_up_to_the_shared_epochs(aws):
    env, _ = aws
    result = _tune(env, "--train-uri", f"s3://{BUCKET}/t/", "--range", "dropout=0.1:0.5", "--strategy", "Hyperband",
                   "--dry-run", "--", "--epochs", "6")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (request,) = printed_requests(result.stdout)
    assert request["HyperParameterTuningJobConfig"]["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 6}}


def test_the_trials_are_listed_best_first_and_the_best_one_is_pulled(aws, tiny_model_dir, tmp_path):
    env, clients = aws
    summary = {"CreationTime": datetime(2026, 12, 1), "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
               "TrainingJobStatus": "Completed", "TunedHyperParameters": {"dropout": "0.2"}}  # fmt: skip
    trials = [summary | {"TrainingJobName": f"emotions-tune-00{i}-abc", "TunedHyperParameters": {"dropout": str(0.1 * i)},
                         "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": OBJECTIVE, "Value": value}}
              for i, value in ((1, 0.41), (2, 0.57))]  # fmt: skip
    trials.append(summary | {"TrainingJobName": "emotions-tune-003-abc", "TrainingJobStatus": "Failed"})
    client = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1").client("sagemaker")
    with Stubber(client) as stub:  # botocore checks the request and the answer against the API model
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [trials[1], trials[0], trials[2]]},
                          {"HyperParameterTuningJobName": "emotions-tune", "SortBy": "FinalObjectiveMetricValue", "SortOrder": "Descending"})
        found = list_trials(client, "emotions-tune")
    table = format_trials(found).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["emotions-tune-002-abc", "emotions-tune-001-abc", "emotions-tune-003-abc"]
    assert "0.5700" in table[1] and "dropout=0.2" in table[1] and table[3].split()[2] == "-"

    # moto's tuning job names "FakeTrainingJobName" its best: that training job, with a model, is what --best-of pulls.
    assert _tune(env, "--train-uri", f"s3://{BUCKET}/t/", "--range", "dropout=0.1:0.5", "--tuning-job-name", "pick-best").returncode == 0
    assert mmsent("launch", "--role", ROLE, "--bucket", BUCKET, "--train-uri", f"s3://{BUCKET}/t/", "--job-name",
                  "FakeTrainingJobName", env=env).returncode == 0  # fmt: skip
    job = clients["sagemaker"].describe_training_job(TrainingJobName="FakeTrainingJobName")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(tiny_model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tiny_model_dir)), recursive=False)
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"][len("s3://"):].partition("/")
    clients["s3"].put_object(Bucket=bucket, Key=key, Body=archive.getvalue())
    pulled = mmsent("jobs", "pull", "--best-of", "pick-best", "--out", str(tmp_path / "best"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "the best training job of pick-best: FakeTrainingJobName" in pulled.stdout and (tmp_path / "best" / "model" / "model.pth").is_file()
    neither = mmsent("jobs", "pull", "--out", str(tmp_path / "x"), env=env)
    assert neither.returncode == 2 and "--best-of TUNING_JOB" in neither.stderr


def test_each_trial_of_a_tuning_job_keeps_its_checkpoints_apart(tmp_path):
    # Every trial gets the tuning job's one CheckpointConfig: each resumes its own checkpoints (spot), never
    # another trial's, whose settings differ on purpose.
    (tmp_path / "input" / "config").mkdir(parents=True)
    hyperparameters = tmp_path / "input" / "config" / "hyperparameters.json"
    hyperparameters.write_text(json.dumps({"dropout": "0.3", "_tuning_objective_metric": OBJECTIVE}))
    base = {"SAGEMAKER_BASE_DIR": str(tmp_path), "SM_MODEL_DIR": str(tmp_path / "model")}
    trial = Environment.read(base | {"TRAINING_JOB_NAME": "emotions-tune-002-abc"})
    assert trial.tuning_trial and trial.checkpoint_dir == tmp_path / "checkpoints" / "emotions-tune-002-abc"
    hyperparameters.write_text(json.dumps({"dropout": "0.3"}))
    job = Environment.read(base | {"TRAINING_JOB_NAME": "a-launched-job"})
    assert not job.tuning_trial and job.checkpoint_dir == tmp_path / "checkpoints"  # a launched job, as before
