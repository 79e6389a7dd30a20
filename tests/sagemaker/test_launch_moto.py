"""`mmsent launch` and `mmsent jobs` against moto's S3 and SageMaker server, over real HTTP on 127.0.0.1.

moto accepts any request and replaces MetricDefinitions with its own, so the request is checked
against our own --dry-run output, and validation has tests of its own (test_request.py).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest

from mmsent.sagemaker.package import ENTRY_POINT
from mmsent.training.tracking import METRIC_DEFINITIONS

from tests.sagemaker.conftest import BUCKET, ROLE
from tests.cli import mmsent


def _keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def _launch(env, *args: str):
    return mmsent("launch", "--role", ROLE, "--bucket", BUCKET, *args, env=env)


def test_dry_run_prints_the_request_and_uploads_nothing(aws, sample_dir):
    env, clients = aws
    before = _keys(clients["s3"])
    result = _launch(env, "--data-dir", str(sample_dir), "--job-name", "dry-1", "--dry-run", "--", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    assert request["TrainingJobName"] == "dry-1" and request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert _keys(clients["s3"]) == before
    # R3D-18's weights in a job are Kinetics-400's unless given, and the request says so.
    assert json.loads(request["HyperParameters"]["video-weights"]) == "kinetics400"
    for given, expected in ((["--video-weights", "none"], "none"), (["--modalities", "text,audio"], None)):
        again = json.loads(_launch(env, "--data-dir", str(sample_dir), "--dry-run", "--", *given).stdout)["HyperParameters"]
        assert (json.loads(again["video-weights"]) if "video-weights" in again else None) == expected


def test_launch_uploads_sources_and_channels_and_creates_the_job(aws, sample_dir, tmp_path):
    env, clients = aws
    planned = json.loads(_launch(env, "--data-dir", str(sample_dir), "--job-name", "job-1", "--spot", "--dry-run",
                                 "--tag", "team=nlp", "--", "--epochs", "2", "--amp").stdout)  # fmt: skip
    result = _launch(env, "--data-dir", str(sample_dir), "--job-name", "job-1", "--spot", "--tag", "team=nlp",
                     "--", "--epochs", "2", "--amp")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "channel train: 31 files uploaded, 0 unchanged" in result.stdout  # the CSV, its media note and 29 clips (one is missing)
    assert "created training job job-1 (1 x ml.g5.xlarge, spot)" in result.stdout

    job = clients["sagemaker"].describe_training_job(TrainingJobName="job-1")
    for field in ("RoleArn", "HyperParameters", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
                  "StoppingCondition", "CheckpointConfig", "TensorBoardOutputConfig", "EnableManagedSpotTraining"):  # fmt: skip
        assert job[field] == planned[field], field
    assert json.loads(job["HyperParameters"]["amp"]) == "true"
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * 86400

    keys = _keys(clients["s3"])
    data = f"mmsent/data/{sample_dir.name}"
    for key in (f"{data}/train/train_sent_emo.csv", f"{data}/train/mmsent-media.json", f"{data}/train/train_splits/dia0_utt0.mp4",
                f"{data}/validation/dev_sent_emo.csv", f"{data}/validation/dev_splits_complete/dia0_utt0.mp4",
                f"{data}/test/output_repeated_splits_test/dia0_utt0.mp4", "mmsent/job-1/source/sourcedir.tar.gz"):  # fmt: skip
        assert key in keys, key

    # The uploaded sources, unpacked as the toolkit unpacks them, run mmsent train.
    body = clients["s3"].get_object(Bucket=BUCKET, Key="mmsent/job-1/source/sourcedir.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(tmp_path / "code", filter="data")
    ran = subprocess.run([sys.executable, "-I", ENTRY_POINT, "--help"], cwd=tmp_path / "code", capture_output=True, text=True)
    assert ran.returncode == 0 and "usage: mmsent train" in ran.stdout

    again = _launch(env, "--data-dir", str(sample_dir), "--job-name", "job-2", "--wait", "--poll-seconds", "0.1")
    assert again.returncode == 0, again.stderr
    assert "channel train: 0 files uploaded, 31 unchanged" in again.stdout
    assert "job-2: Completed" in again.stdout


def test_launch_with_s3_uris_as_they_are(aws):
    env, clients = aws
    result = _launch(env, "--train-uri", f"s3://{BUCKET}/elsewhere/train/", "--validation-uri", f"s3://{BUCKET}/elsewhere/dev/",
                     "--job-name", "uri-job", "--instance-type", "ml.g5.12xlarge", "--input-mode", "FastFile")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = clients["sagemaker"].describe_training_job(TrainingJobName="uri-job")
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]] == [
        f"s3://{BUCKET}/elsewhere/train/", f"s3://{BUCKET}/elsewhere/dev/"]  # fmt: skip
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
    assert job["InputDataConfig"][0]["InputMode"] == "FastFile"
    spread = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--distribution", "torchrun", "--instance-count", "2",
                     "--instance-type", "ml.g5.xlarge", "--job-name", "ddp-job")  # fmt: skip
    assert spread.returncode == 0, spread.stderr
    job = clients["sagemaker"].describe_training_job(TrainingJobName="ddp-job")
    assert job["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    one_gpu = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--distribution", "torchrun", "--instance-type", "ml.g5.xlarge")
    assert one_gpu.returncode == 2 and "torchrun distribution needs several GPUs or several instances" in one_gpu.stderr


def test_a_missing_bucket_or_one_in_another_region_is_a_clear_error_before_any_upload(aws, sample_dir):
    env, clients = aws
    result = mmsent("launch", "--role", ROLE, "--bucket", "no-such-bucket-here", "--data-dir", str(sample_dir), env=env)
    assert result.returncode == 2 and "bucket no-such-bucket-here does not exist" in result.stderr
    clients["s3"].create_bucket(Bucket="mmsent-in-ireland", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    elsewhere = mmsent("launch", "--role", ROLE, "--bucket", "mmsent-in-ireland", "--data-dir", str(sample_dir), env=env)
    assert elsewhere.returncode == 2, elsewhere.stderr
    assert "bucket mmsent-in-ireland is in eu-west-1, the job would run in us-east-1" in elsewhere.stderr
    assert clients["s3"].list_objects_v2(Bucket="mmsent-in-ireland").get("KeyCount") == 0


def test_a_403_for_a_missing_key_means_upload_it(aws, tmp_path):
    # S3 answers HeadObject with 403, not 404, for a missing key when the caller may not
    # s3:ListBucket. botocore's before-call hook stands in for that one answer; the PUT is moto's.
    from botocore.awsrequest import AWSResponse

    from mmsent.sagemaker.s3 import upload_files

    env, clients = aws
    s3 = clients["s3"]
    denied = []

    def forbid_head(**_):
        denied.append(1)
        return AWSResponse("https://s3.example", 403, {}, None), {"Error": {"Code": "403", "Message": "Forbidden"},
                                                                   "ResponseMetadata": {"HTTPStatusCode": 403}}  # fmt: skip

    s3.meta.events.register("before-call.s3.HeadObject", forbid_head)
    try:
        files = []
        for i in range(3):
            (tmp_path / f"f{i}.bin").write_bytes(bytes([i]) * 100)
            files.append((tmp_path / f"f{i}.bin", f"forbidden/f{i}.bin"))
        assert upload_files(s3, files, BUCKET, progress=False) == {f"forbidden/f{i}.bin": True for i in range(3)}
    finally:
        s3.meta.events.unregister("before-call.s3.HeadObject", forbid_head)
    assert len(denied) == 3
    assert s3.get_object(Bucket=BUCKET, Key="forbidden/f2.bin")["Body"].read() == bytes([2]) * 100


def test_launch_needs_role_bucket_and_data(aws):
    env, _ = aws
    assert "--role and --bucket required" in mmsent("launch", env=env).stderr
    assert "no training data" in mmsent("launch", "--role", ROLE, "--bucket", BUCKET, env=env).stderr
    bad = mmsent("launch", "--role", ROLE, "--bucket", BUCKET, "--train-uri", f"s3://{BUCKET}/t/", "--", "--data-dir", "/x", env=env)
    assert bad.returncode == 2 and "--data-dir is set by the job's container contract" in bad.stderr


def test_jobs_list_describe_and_pull_a_model_and_its_tensorboard_logs(aws, tiny_model_dir, sample_dir, tmp_path):
    env, clients = aws
    assert _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--job-name", "pull-job").returncode == 0
    job = clients["sagemaker"].describe_training_job(TrainingJobName="pull-job")
    # What the service leaves behind: model.tar.gz of the model dir, and the synced TensorBoard folder.
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz", compresslevel=1) as tar:  # weights barely compress: level 1 is as small, faster
        for path in sorted(tiny_model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tiny_model_dir)), recursive=False)
    artifact_bucket, _, artifact_key = job["ModelArtifacts"]["S3ModelArtifacts"][len("s3://"):].partition("/")
    clients["s3"].put_object(Bucket=artifact_bucket, Key=artifact_key, Body=archive.getvalue())
    events = next((tiny_model_dir.parent / "tensorboard").glob("events.out.tfevents.*"))
    tb_bucket, _, tb_prefix = job["TensorBoardOutputConfig"]["S3OutputPath"][len("s3://"):].partition("/")
    clients["s3"].upload_file(str(events), tb_bucket, f"{tb_prefix}/{events.name}")

    listing = mmsent("jobs", "list", "--name-contains", "pull", env=env)
    assert listing.returncode == 0 and "pull-job" in listing.stdout and "Completed" in listing.stdout
    described = mmsent("jobs", "describe", "pull-job", env=env)
    assert json.loads(described.stdout)["TrainingJobName"] == "pull-job"

    pulled = mmsent("jobs", "pull", "pull-job", "--out", str(tmp_path / "pulled"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "model" / "model.pth").is_file()
    assert (tmp_path / "pulled" / "tensorboard" / events.name).read_bytes() == events.read_bytes()
    evaluated = mmsent("evaluate", "--model-dir", str(tmp_path / "pulled" / "model"), "--data-dir", str(sample_dir),
                       "--num-workers", "0", "--out", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["items"] == 10


def test_jobs_errors_from_the_service_are_clear(aws):
    env, _ = aws
    result = mmsent("jobs", "describe", "never-launched", env=env)
    assert result.returncode == 2 and "SageMaker:" in result.stderr and "never-launched" in result.stderr


def test_an_image_that_cannot_run_the_job_is_refused_before_any_call(aws):
    env, clients = aws
    before = _keys(clients["s3"])
    old = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--framework-version", "2.5.1", "--job-name", "old-image")
    assert old.returncode == 2
    assert "pytorch-training 2.5.1 cannot run the job's requirements" in old.stderr and "needs torch>=2.6" in old.stderr
    unknown = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--framework-version", "2.3.0")
    assert unknown.returncode == 2 and "--framework-version '2.3.0': mmsent knows the packages of" in unknown.stderr
    copies = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--instance-count", "2", "--job-name", "two-copies")
    assert copies.returncode == 2 and "instance count 2 without --distribution torchrun" in copies.stderr
    assert _keys(clients["s3"]) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0"], "training arguments: epochs must be at least 1, got 0"),
    (["--learning-rate", "-1"], "training arguments: learning_rate must be positive, got -1.0"),
    (["--modalities", "foo"], "training arguments: modalities must be a non-empty subset of text,audio,video, got foo"),
    (["--num-frames", "0"], "training arguments: num_frames must be a positive integer, got 0"),
    (["--audio-channels", "16,0"], "training arguments: audio_channels must be one or more positive widths, got 16,0"),
    (["--max-tokens", "1000"], "training arguments: --max-tokens 1000: the text model reads at most 512 tokens"),
])  # fmt: skip
def test_training_arguments_are_validated_as_mmsent_train_would_before_any_call(aws, args, message):
    env, _ = aws
    result = _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--dry-run", "--", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-500:]


def _archive(members) -> bytes:
    """A model.tar.gz from (TarInfo, bytes or None) pairs, crafted as an attacker or a cut copy would."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def test_a_bad_model_archive_is_refused_and_the_earlier_pull_stays_whole(aws, tiny_model_dir, tmp_path):
    env, clients = aws
    assert _launch(env, "--train-uri", f"s3://{BUCKET}/t/", "--job-name", "bad-archive-job").returncode == 0
    job = clients["sagemaker"].describe_training_job(TrainingJobName="bad-archive-job")
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"][len("s3://"):].partition("/")
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(tiny_model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tiny_model_dir)), recursive=False)
    clients["s3"].put_object(Bucket=bucket, Key=key, Body=good.getvalue())
    out = tmp_path / "pulled"
    assert mmsent("jobs", "pull", "bad-archive-job", "--out", str(out), env=env).returncode == 0
    weights = (out / "model" / "model.pth").read_bytes()

    escape = tarfile.TarInfo("../escaped.txt")
    escape.size = 4
    link = tarfile.TarInfo("model.pth")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    not_a_model = tarfile.TarInfo("notes.txt")
    not_a_model.size = 2
    crafted = {
        "a member outside": _archive([(escape, b"evil")]),
        "a link out": _archive([(link, None)]),
        "cut short": good.getvalue()[: len(good.getvalue()) // 2],
        "no model in it": _archive([(not_a_model, b"hi")]),
    }
    for what, body in crafted.items():
        clients["s3"].put_object(Bucket=bucket, Key=key, Body=body)
        result = mmsent("jobs", "pull", "bad-archive-job", "--out", str(out), env=env)
        assert result.returncode == 2, (what, result.stderr[-1500:])
        assert "not a usable model archive" in result.stderr and "is left as it was" in result.stderr, what
        assert "Traceback" not in result.stderr, what
        assert (out / "model" / "model.pth").read_bytes() == weights, what
        assert not (tmp_path / "escaped.txt").exists() and not (out / "escaped.txt").exists()
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".model")) == [], what  # no staging left


def test_a_region_where_sagemaker_does_not_run_is_refused_before_any_call(aws, sample_dir):
    env, clients = aws
    result = mmsent("launch", "--role", ROLE, "--bucket", BUCKET, "--region", "xx-fake-9", "--data-dir", str(sample_dir),
                    "--dry-run", env=env)  # fmt: skip
    assert result.returncode == 2 and "region 'xx-fake-9': not a region where SageMaker runs" in result.stderr, result.stderr
